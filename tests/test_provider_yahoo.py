"""The yahoo provider at its boundary: the real yfinance over a fake Yahoo (tests/fake_yahoo.py).

Shapes and units of every method, Yahoo's spellings, the computed delta against
hand-checked Black-Scholes values, the request count and budget, and where
yfinance keeps its files. Odd data and library exceptions: test_provider_yahoo_errors.py.
"""
import datetime as dt
import inspect
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.fake_yahoo import MARKET_TIME, fake_yahoo, spot_of
from workers.providers import create_provider
from workers.providers.base import BAR_COLUMNS, CHAIN_COLUMNS, QUOTE_COLUMNS, BudgetExhausted
from workers.providers.yahoo import QUOTES_PER_REQUEST, YahooConfig, YahooProvider, open_from_config
from workers.providers.yahoo_answers import bs_delta, years_to_expiry

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")  # yfinance on pandas 3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRIDAY = dt.date(2026, 11, 27)  # the first weekly expiration after MARKET_TIME (Wednesday)


@pytest.fixture
def fake(monkeypatch):
    yield from fake_yahoo(monkeypatch)


@pytest.fixture
def make(fake, tmp_path):
    providers = []

    def make(**overrides):
        options = {"state_dir": str(tmp_path / "state"), "requests_per_minute": 6000, "request_burst": 100,
                   "call_timeout_s": 2.0, **overrides}
        provider = YahooProvider(YahooConfig(**options), clock=lambda: MARKET_TIME)
        providers.append(provider)
        return provider

    yield make
    for provider in providers:
        provider.close()


def test_every_method_answers_in_the_standard_shapes_and_units(make):
    yahoo = make()
    quotes = yahoo.quotes(["AAPL", "MSFT"])
    assert tuple(quotes.columns) == QUOTE_COLUMNS and list(quotes.index) == ["AAPL", "MSFT"]
    assert quotes.index.name == "symbol" and quotes.errors == {}
    assert [str(t) for t in quotes.dtypes] == ["float64", "float64", "float64", "int64", "float64", "float64",
                                               "float64", "float64", "object"]
    assert quotes.loc["AAPL", "session_last"] == quotes.loc["AAPL", "price"]  # Yahoo's is the regular session's
    assert quotes.loc["AAPL", "low"] <= quotes.loc["AAPL", "price"] <= quotes.loc["AAPL", "high"]
    assert quotes.loc["AAPL", "session"] is not None  # today's bar comes from the quote (the bars cache)
    assert quotes.loc["AAPL", "price"] == spot_of("AAPL")
    assert quotes.loc["AAPL", "daily_change_pct"] == pytest.approx(1.5, abs=1e-3)  # percent, not 0.015

    bars = yahoo.daily_bars("AAPL", days=365)
    assert tuple(bars.columns) == BAR_COLUMNS and all(str(t) == "float64" for t in bars.dtypes)
    assert bars.index.tz is None and bars.index.name == "date" and bars.index.is_monotonic_increasing
    assert (bars.index == bars.index.normalize()).all()  # naive midnights
    assert bars.index[-1] == pd.Timestamp("2026-11-25")  # today's partial session last
    assert bars.index[0] >= pd.Timestamp("2025-11-25") and len(bars) > 240

    intraday = yahoo.intraday_bars("AAPL", minutes=5, days=1)
    assert tuple(intraday.columns) == BAR_COLUMNS and str(intraday.index.tz) == "America/New_York"
    assert intraday.index[0] == pd.Timestamp("2026-11-25 09:30", tz="America/New_York")

    assert yahoo.expirations("AAPL", count=4) == [FRIDAY, dt.date(2026, 12, 4), dt.date(2026, 12, 11),
                                                   dt.date(2026, 12, 18)]

    chain = yahoo.option_chain("AAPL", FRIDAY, strike_band_pct=5.0)
    assert tuple(chain.columns) == CHAIN_COLUMNS and len(chain)
    assert set(chain["type"]) == {"CALL", "PUT"} and chain["type"].iloc[0] == "CALL"
    assert (chain["iv"] == 30.0).all()  # percent, as Schwab reports it
    calls, puts = chain[chain["type"] == "CALL"], chain[chain["type"] == "PUT"]
    assert ((calls["delta"] > 0) & (calls["delta"] < 1)).all() and ((puts["delta"] < 0) & (puts["delta"] > -1)).all()
    assert (chain["expiry"] == FRIDAY).all() and (chain["dte"] == 2).all()
    assert (chain["underlying_price"] == spot_of("AAPL")).all()
    assert (abs(chain["strike"] / spot_of("AAPL") - 1) <= 0.05).all()
    assert str(chain["volume"].dtype) == str(chain["open_interest"].dtype) == "int64"
    assert chain["mark"].iloc[0] == pytest.approx((chain["bid"].iloc[0] + chain["ask"].iloc[0]) / 2)


def test_quotes_cost_one_request_per_batch_not_one_per_symbol(make, fake):
    yahoo = make()
    symbols = [f"S{i:03d}" for i in range(QUOTES_PER_REQUEST + 20)]
    quotes = yahoo.quotes(symbols)
    assert len(quotes) == len(symbols) and quotes.errors == {}
    assert len(fake.data_requests("quote")) == 2
    yahoo.quotes(["AAPL", "MSFT", "NVDA"])
    assert len(fake.data_requests("quote")) == 3


def test_class_shares_and_indexes_are_asked_in_yahoos_spelling_and_answered_in_ours(make, fake):
    yahoo = make()
    quotes = yahoo.quotes(["BRK.B", "$SPX"])
    assert fake.data_requests("quote")[-1][1]["symbols"] == "BRK-B,^SPX"
    assert list(quotes.index) == ["BRK.B", "$SPX"] and quotes.loc["BRK.B", "price"] == spot_of("BRK-B")
    yahoo.daily_bars("BRK/B", days=30)
    assert fake.data_requests("chart")[-1][0] == "/v8/finance/chart/BRK-B"


def test_daily_bars_cover_the_days_asked_with_the_smallest_yahoo_range(make, fake):
    yahoo = make()
    for days, expected in ((20, "1mo"), (90, "6mo"), (365, "1y"), (400, "2y")):
        bars = yahoo.daily_bars("AAPL", days=days)
        assert fake.data_requests("chart")[-1][1]["range"] == expected
        assert bars.index[0] >= pd.Timestamp(dt.date(2026, 11, 25) - dt.timedelta(days=days))


def test_chains_reuse_the_ticker_that_listed_the_expirations(make, fake):
    yahoo = make()
    for expiry in yahoo.expirations("AAPL", count=4):
        yahoo.option_chain("AAPL", expiry)
    assert len(fake.data_requests("options")) == 1 + 4  # the listing once, then one per expiration


def test_delta_matches_hand_checked_black_scholes_values():
    # Hull, Options, Futures and Other Derivatives, the textbook example: S=42, K=40, r=10 %, sigma=20 %,
    # T=0.5: d1 = (ln(42/40) + (0.10 + 0.02) 0.5) / (0.2 sqrt(0.5)) = 0.7693, N(d1) = 0.7791.
    call, put = bs_delta([True, False], 42.0, [40.0, 40.0], 0.20, 0.5, rate=0.10)
    assert call == pytest.approx(0.7791, abs=5e-5) and put == pytest.approx(0.7791 - 1, abs=5e-5)
    # The provider's own assumptions (r = 4 %, no dividends), at the money: S=K=100, sigma=25 %, T=0.25:
    # d1 = (0 + (0.04 + 0.03125) 0.25) / (0.25 x 0.5) = 0.1425, N(0.1425) = 0.5567.
    call, put = bs_delta([True, False], 100.0, [100.0, 100.0], 0.25, 0.25)
    assert call == pytest.approx(0.5567, abs=5e-5) and put == pytest.approx(-0.4433, abs=5e-5)
    # A dividend yield lowers the call's delta by e^(-qT): 0.5528 x e^(-0.005) with q = 2 %.
    assert bs_delta(True, 100.0, 100.0, 0.25, 0.25, dividend_yield=0.02) == pytest.approx(
        math.exp(-0.005) * 0.5 * math.erfc(-((0.04 - 0.02 + 0.03125) * 0.25 / 0.125) / math.sqrt(2)))
    assert np.isnan(bs_delta(True, 100.0, 100.0, np.nan, 0.25)) and np.isnan(bs_delta(True, 100.0, 0.0, 0.25, 0.25))


def test_time_to_expiry_is_calendar_time_to_the_4pm_close_and_at_least_an_hour():
    # Wednesday 15:00 New York to Friday 16:00 New York: 49 hours of a 365-day year.
    assert years_to_expiry(pd.Timestamp(MARKET_TIME), FRIDAY) == pytest.approx(49 / (365 * 24))
    after_the_close = pd.Timestamp("2026-11-27 17:00", tz="America/New_York")
    assert years_to_expiry(after_the_close, FRIDAY) == pytest.approx(1 / (365 * 24))


def test_the_chains_delta_is_black_scholes_from_each_contracts_own_iv(make, fake):
    def steep_smile(kind, document):
        for side in ("calls", "puts"):
            for contract in document["optionChain"]["result"][0]["options"][0][side]:
                contract["impliedVolatility"] = 0.2 + abs(contract["strike"] / spot_of("AAPL") - 1) * 4

    fake.edit["AAPL"] = steep_smile
    chain = make().option_chain("AAPL", FRIDAY, strike_band_pct=5.0)
    years = 49 / (365 * 24)
    expected = bs_delta(chain["type"].to_numpy() == "CALL", spot_of("AAPL"), chain["strike"].to_numpy(),
                        chain["iv"].to_numpy() / 100, years)
    assert np.allclose(chain["delta"], expected, atol=5e-5)
    assert chain["iv"].nunique() > 3


def test_the_request_timeout_reaches_yfinance_where_it_takes_one_and_only_there(make, fake):
    seen = []
    original = fake.get
    fake.get = lambda url, params, timeout: seen.append((url.split("/")[5], timeout)) or original(url, params,
                                                                                               timeout)
    yahoo = make(call_timeout_s=3.5)
    yahoo.quotes(["AAPL"])
    yahoo.daily_bars("AAPL", days=30, timeout=1.25)
    yahoo.expirations("AAPL")
    assert ("quote", 3.5) in seen and ("chart", 1.25) in seen
    # Ticker.options and option_chain take no timeout: yfinance's own 30 s applies (yahoo.py says so).
    assert [t for kind, t in seen if kind == "options"] == [30]


def test_calls_take_tokens_from_a_yahoo_bucket_of_their_own(make, fake, tmp_path):
    yahoo = make(requests_per_minute=2, request_burst=1)
    yahoo.quotes(["AAPL"])
    assert (tmp_path / "state" / "yahoo-requests.bucket").exists()
    assert not (tmp_path / "state" / "schwab-requests.bucket").exists()
    asked = len(fake.requests)
    with pytest.raises(BudgetExhausted, match="next token in"):
        yahoo.daily_bars("AAPL", days=30, timeout=0.2)
    assert len(fake.requests) == asked  # refused before asking Yahoo


def test_yfinance_keeps_its_caches_in_the_state_dir_not_the_home_directory(make, tmp_path):
    make().daily_bars("AAPL", days=30)
    assert (tmp_path / "state" / "yahoo-cache" / "tkr-tz.db").exists()


def test_config_tables_build_it_and_unknown_options_are_named(fake, tmp_path):
    provider = create_provider("yahoo", {"call_timeout_s": 4.0}, state_dir=str(tmp_path))
    assert isinstance(provider, YahooProvider) and provider.config.state_dir == str(tmp_path)
    with pytest.raises(ValueError, match=r"unknown yahoo provider option\(s\) token_path; allowed: call_timeout_s"):
        create_provider("yahoo", {"token_path": "x"})
    provider = open_from_config({"kind": "yahoo", "request_timeout": 7.5, "requests_per_minute": 1,
                                 "token_file": "ignored.json"}, str(tmp_path))
    assert provider.config.call_timeout_s == 7.5 and provider.budget.limit == 2 and provider.budget.burst == 1


def test_the_parts_of_yfinance_this_provider_calls_exist_with_the_arguments_it_passes():
    import yfinance
    from yfinance.data import YfData

    assert {"url", "params", "timeout"} <= set(inspect.signature(YfData.get_raw_json).parameters)
    history = inspect.signature(yfinance.scrapers.history.PriceHistory.history).parameters
    assert {"period", "interval", "auto_adjust", "actions", "timeout"} <= set(history)
    assert "date" in inspect.signature(yfinance.Ticker.option_chain).parameters
    assert callable(yfinance.set_tz_cache_location) and hasattr(yfinance.config.debug, "hide_exceptions")


def test_the_simulated_market_never_imports_yfinance(tmp_path):
    code = ("import sys\n"
            "from workers import kinds, scanner, technical, watchlist, whale_flows\n"
            "import workers.providers\n"
            f"scanner.open_provider({{'kind': 'sim'}}, {str(tmp_path)!r}).quotes(['AAPL'])\n"
            "assert 'yfinance' not in sys.modules, 'yfinance was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr

