"""The yahoo provider's error boundary: whatever yfinance raises or returns becomes the right ProviderError.

The real yfinance runs over a fake Yahoo (tests/fake_yahoo.py) that fails on
request or sends damaged documents. Each failure must come out as a
ProviderError subclass naming the symbol, classified the way the scanners
judge it (outcomes.about_the_item: does it count toward the symbol's
quarantine?), never as a crash.
"""
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from tests.fake_yahoo import MARKET_TIME, fake_yahoo, spot_of
from workers.outcomes import about_the_item
from workers.providers.base import BadPayload, DeadlineExceeded, HttpStatusError, ProviderError
from workers.providers.yahoo import YahooConfig, YahooProvider

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")
FRIDAY = dt.date(2026, 11, 27)
CALLS = {
    "quotes": lambda yahoo, s: yahoo.quotes([s]),
    "daily_bars": lambda yahoo, s: yahoo.daily_bars(s, days=365),
    "expirations": lambda yahoo, s: yahoo.expirations(s),
    "option_chain": lambda yahoo, s: yahoo.option_chain(s, FRIDAY),
}


@pytest.fixture
def fake(monkeypatch):
    yield from fake_yahoo(monkeypatch)


@pytest.fixture
def yahoo(fake, tmp_path):
    provider = YahooProvider(YahooConfig(state_dir=str(tmp_path), requests_per_minute=6000, request_burst=100),
                             clock=lambda: MARKET_TIME)
    yield provider
    provider.close()


def raised(call, *args):
    with pytest.raises(ProviderError) as info:
        call(*args)
    return info.value


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize("fault, error, status, words, the_symbols", [
    ("timeout", DeadlineExceeded, None, "no answer within yfinance's per-request timeout", True),
    ("connection", ProviderError, None, "connection failed (ConnectionError", True),
    ("rate_limit", HttpStatusError, 429, "rate limited by Yahoo (HTTP 429)", False),
    ("junk", BadPayload, None, "unusable answer from Yahoo (JSONDecodeError", True),
])
def test_library_exceptions_become_provider_errors_classified_for_quarantine(yahoo, fake, method, fault, error,
                                                                            status, words, the_symbols):
    fake.faults["TSLA"] = fault
    exc = raised(CALLS[method], yahoo, "TSLA")
    assert type(exc) is error and words in str(exc) and "TSLA" in str(exc)
    assert getattr(exc, "status", None) == status
    assert about_the_item(exc) is the_symbols  # a 429 is Yahoo's limit, never the symbol's fault


def test_an_http_error_status_from_the_batch_quote_is_an_http_status_error(yahoo, fake):
    fake.faults["TSLA"] = "http500"
    exc = raised(yahoo.quotes, ["TSLA", "AAPL"])
    assert type(exc) is HttpStatusError and exc.status == 500 and "Internal Server Error" in exc.excerpt


def test_yahoo_saying_it_is_down_is_a_503(yahoo, fake):
    yahoo.daily_bars("AAPL", days=30)  # the symbol's timezone is cached: the next call asks for data only
    fake.faults["AAPL"] = "down"
    exc = raised(yahoo.daily_bars, "AAPL", 30)
    assert type(exc) is HttpStatusError and exc.status == 503 and "says it is down" in str(exc)


def test_a_symbol_yahoo_does_not_know_is_that_symbols_own_bad_payload(yahoo, fake):
    fake.faults["ZZZZ"] = "unknown"
    quotes = yahoo.quotes(["AAPL", "ZZZZ"])
    assert list(quotes.index) == ["AAPL"] and "Yahoo does not know ZZZZ" in quotes.errors["ZZZZ"]
    exc = raised(yahoo.daily_bars, "ZZZZ")
    assert type(exc) is BadPayload and "Yahoo does not know ZZZZ (HTTP 404" in str(exc) and exc.symbol == "ZZZZ"
    assert yahoo.expirations("ZZZZ") == []  # Yahoo lists no options for it, as Schwab does
    exc = raised(yahoo.option_chain, "ZZZZ", FRIDAY)
    assert type(exc) is BadPayload and "Expiration `2026-11-27` cannot be found" in str(exc)


def test_a_delisted_symbol_without_prices_is_a_bad_payload(yahoo, fake):
    fake.faults["GONE"] = "delisted"
    exc = raised(yahoo.daily_bars, "GONE")
    assert type(exc) is BadPayload and "Yahoo has no data for GONE" in str(exc) and about_the_item(exc)


def test_a_symbol_yahoo_cannot_spell_fails_alone_without_asking(yahoo, fake):
    quotes = yahoo.quotes(["AAPL", "not a symbol"])
    assert list(quotes.index) == ["AAPL"] and "not a valid symbol" in quotes.errors["not a symbol"]
    assert isinstance(raised(yahoo.daily_bars, "bad symbol!"), ProviderError)
    assert [path for path, _ in fake.requests if "bad" in path] == []


def quote_edit(change):
    return lambda kind, document: change(document) if kind == "quote" else None


@pytest.mark.parametrize("change, words", [
    (lambda r: r.pop("regularMarketPrice"), "TSLA has no regularMarketPrice"),
    (lambda r: r.update(regularMarketPrice=float("nan")), "TSLA has no regularMarketPrice"),
    (lambda r: r.update(regularMarketPrice="12.5"), "TSLA has no regularMarketPrice"),
])
def test_a_quote_without_a_usable_price_is_an_error_for_that_symbol_only(yahoo, fake, change, words):
    fake.edit["TSLA"] = quote_edit(change)
    quotes = yahoo.quotes(["AAPL", "TSLA"])
    assert list(quotes.index) == ["AAPL"] and words in quotes.errors["TSLA"]


def test_a_quote_without_previous_close_falls_back_on_yahoos_change_fields(yahoo, fake):
    fake.edit["TSLA"] = quote_edit(lambda r: r.update(regularMarketPreviousClose=None, regularMarketVolume=None,
                                                      regularMarketChange=-2.0, regularMarketChangePercent=-0.8))
    row = yahoo.quotes(["TSLA"]).loc["TSLA"]
    assert (row["daily_change"], row["daily_change_pct"], row["volume"]) == (-2.0, -0.8, 0)


@pytest.mark.parametrize("body, words", [
    ({"finance": {"error": {"code": "Unauthorized", "description": "Invalid Crumb"}}}, "no 'quoteResponse'"),
    ({"quoteResponse": {"result": None, "error": {"code": "Bad Request"}}}, "Yahoo answered an error"),
    ({"quoteResponse": {"result": {"symbol": "AAPL"}, "error": None}}, "'quoteResponse.result' is not a list"),
    ([1, 2, 3], "no 'quoteResponse'"),
])
def test_an_unusable_quote_answer_fails_the_batch_as_a_bad_payload(yahoo, fake, body, words):
    from tests.fake_yahoo import FakeResponse

    fake.quote = lambda url, symbols: FakeResponse(url, 200, body)
    exc = raised(yahoo.quotes, ["AAPL", "MSFT"])
    assert type(exc) is BadPayload and words in str(exc) and "yahoo quotes AAPL..MSFT" in str(exc)


def chart_edit(change):
    def edit(kind, document):
        if kind == "chart":
            change(document["chart"]["result"][0])
    return edit


def nulls(column, rows):
    def change(result):
        for row in rows:
            result["indicators"]["quote"][0][column][row] = None
    return change


def test_bars_with_nulls_lose_those_rows_and_a_missing_volume_is_zero(yahoo, fake):
    whole = yahoo.daily_bars("AAPL", days=365)
    fake.edit["MSFT"] = chart_edit(lambda r: (nulls("close", [-2])(r), nulls("high", [0])(r),
                                              nulls("volume", [-1])(r)))
    bars = yahoo.daily_bars("MSFT", days=365)
    assert len(bars) == len(whole) - 2 and not bars.isna().any().any()
    assert pd.Timestamp("2026-11-24") not in bars.index and bars["volume"].iloc[-1] == 0.0


@pytest.mark.parametrize("change, words", [
    (lambda r: r.update(timestamp=[], indicators={"quote": [{k: [] for k in ("open", "high", "low", "close",
                                                                             "volume")}],
                                                  "adjclose": [{"adjclose": []}]}), "Yahoo returned no bars"),
    (nulls("close", range(252)), "none of Yahoo's"),
    (lambda r: r.pop("indicators"), "unusable answer from Yahoo"),
    (lambda r: r["meta"].pop("exchangeTimezoneName"), "unusable answer from Yahoo (KeyError"),
    (lambda r: r.__setitem__("timestamp", r["timestamp"][:-3]), "unusable answer from Yahoo"),
])
def test_damaged_bars_are_bad_payloads_naming_the_symbol(yahoo, fake, change, words):
    fake.edit["TSLA"] = chart_edit(change)
    exc = raised(yahoo.daily_bars, "TSLA")
    assert type(exc) is BadPayload and "yahoo daily bars TSLA" in str(exc) and words in str(exc)


def options_edit(change):
    def edit(kind, document):
        if kind == "options":
            change(document["optionChain"]["result"][0])
    return edit


def contracts(result, side="calls"):
    return result["options"][0][side]


def test_yahoos_placeholder_ivs_and_missing_counts_are_nan_and_zero(yahoo, fake):
    def damage(result):
        near = min(contracts(result), key=lambda c: abs(c["strike"] - spot_of("AAPL")))
        near.update(impliedVolatility=1e-05, volume=None, openInterest=None, bid=0.0, ask=0.0)
        near.pop("lastPrice")

    fake.edit["AAPL"] = options_edit(damage)
    chain = yahoo.option_chain("AAPL", FRIDAY)
    row = chain.iloc[(chain["strike"] - spot_of("AAPL")).abs().argmin()]
    assert np.isnan(row["iv"]) and np.isnan(row["delta"]) and row["volume"] == row["open_interest"] == 0
    assert np.isnan(row["mark"])  # no bid/ask and no last price: no mark either
    assert chain["iv"].notna().sum() == len(chain) - 1


def test_a_chain_outside_the_session_marks_at_the_last_price(yahoo, fake):
    fake.edit["AAPL"] = options_edit(lambda r: [c.update(bid=0.0, ask=0.0) for c in contracts(r)])
    calls = yahoo.option_chain("AAPL", FRIDAY).query("type == 'CALL'")
    assert (calls["mark"] == calls["last"]).all()


@pytest.mark.parametrize("change, words", [
    (lambda r: r["quote"].pop("regularMarketPrice"), "no underlying regularMarketPrice"),
    (lambda r: contracts(r)[3].update(strike=None), "a call without a strike"),
    (lambda r: r.update(options=[]), "Yahoo has no option chain"),
    (lambda r: r["options"][0]["puts"][0].update(lastTradeDate="yesterday"), "unusable answer from Yahoo"),
])
def test_damaged_chains_are_bad_payloads_naming_the_symbol(yahoo, fake, change, words):
    fake.edit["AAPL"] = options_edit(change)
    exc = raised(yahoo.option_chain, "AAPL", FRIDAY)
    assert type(exc) is BadPayload and "yahoo option chain 2026-11-27 AAPL" in str(exc) and words in str(exc)


def test_an_expiration_list_with_a_bad_date_is_a_bad_payload(yahoo, fake, monkeypatch):
    import yfinance

    monkeypatch.setattr(yfinance.Ticker, "options", property(lambda self: ("2026-11-27", "soon")))
    exc = raised(yahoo.expirations, "AAPL")
    assert type(exc) is BadPayload and "bad expiration date 'soon'" in str(exc)


def test_something_unexpected_inside_yfinance_is_a_provider_error_not_a_crash(yahoo, monkeypatch):
    import yfinance

    def broken(self, *args, **kwargs):
        raise RuntimeError("an internal yfinance bug")

    monkeypatch.setattr(yfinance.Ticker, "history", broken)
    exc = raised(yahoo.daily_bars, "AAPL")
    assert type(exc) is ProviderError and "yfinance failed (RuntimeError: an internal yfinance bug)" in str(exc)
    monkeypatch.setattr(yfinance.Ticker, "history", lambda self, **kwargs: "not a frame")
    exc = raised(yahoo.daily_bars, "AAPL")
    assert type(exc) is BadPayload and "yfinance returned str, not a DataFrame" in str(exc)
