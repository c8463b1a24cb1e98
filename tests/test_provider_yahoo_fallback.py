"""`fallback = "yahoo"`: Schwab first; Yahoo for the quotes and daily bars Schwab cannot give.

The primary is a Schwab stand-in (the simulated market, failing as told), the
fallback the real yahoo provider over the fake Yahoo. What falls back and on
which failures, which error wins when both fail, the primary skipped while it
is down, the counts by provider, and the pair under a real scan cycle.
"""
import datetime as dt

import pytest

from supervisor import config as config_module
from tests import configs
from tests.fake_yahoo import MARKET_TIME, fake_yahoo, spot_of
from tests.test_scanners import make_scan
from workers import market_hours, scanner, technical, watchlist
from workers.outcomes import about_the_item
from workers.providers.base import (AuthError, BadPayload, BudgetExhausted, CircuitOpen, DeadlineExceeded,
                                    HttpStatusError, Provider, ProviderError, QuoteBatch)
from workers.providers.fallback import FallbackProvider
from workers.providers.sim import SimProvider
from workers.providers.yahoo import YahooConfig, YahooProvider
from tests.clock import Clock

pytestmark = pytest.mark.filterwarnings("ignore:The inplace keyword")
FRIDAY = dt.date(2026, 11, 27)
FAILURES = {
    "auth": lambda: AuthError("schwab token file not found"),
    "budget": lambda: BudgetExhausted("request budget exhausted (120 per 60s)"),
    "429": lambda: HttpStatusError("GET /marketdata/v1/quotes: HTTP 429", status=429),
    "503": lambda: HttpStatusError("GET /marketdata/v1/quotes: HTTP 503", status=503),
    "deadline": lambda: DeadlineExceeded("GET /marketdata/v1/pricehistory: deadline of 10.00s exceeded"),
    "connection": lambda: ProviderError("GET /marketdata/v1/quotes: connection failed (ConnectionError)"),
    "bad_payload": lambda: BadPayload("pricehistory TSLA: no 'candles' list in the response"),
    "circuit": lambda: CircuitOpen("circuit open for TSLA after 5 consecutive failures"),
    "404": lambda: HttpStatusError("GET /marketdata/v1/pricehistory: HTTP 404", status=404),
}


class Primary(Provider):
    """A Schwab stand-in: the simulated market, failing as told (`fail`: symbol or "*" -> FAILURES key)."""

    name = "schwab"

    def __init__(self):
        self.sim = SimProvider(seed=1, clock=lambda: MARKET_TIME)
        self.fail, self.unknown, self.calls = {}, set(), []

    def _check(self, method, symbols):
        self.calls.append((method, tuple(symbols)))
        for key in ("*", *symbols):
            if key in self.fail:
                raise FAILURES[self.fail[key]]()

    def quotes(self, symbols, *, timeout=None):
        symbols = list(symbols)
        self._check("quotes", symbols)
        batch = self.sim.quotes([s for s in symbols if s not in self.unknown])
        errors = {**batch.errors, **{s: f"quotes: Schwab does not know symbol {s}" for s in self.unknown}}
        return QuoteBatch.build({s: batch.loc[s].to_dict() for s in batch.index}, errors)

    def daily_bars(self, symbol, days=365, *, timeout=None):
        self._check("daily_bars", [symbol])
        return self.sim.daily_bars(symbol, days)

    def intraday_bars(self, symbol, minutes=5, days=1, *, timeout=None):
        self._check("intraday_bars", [symbol])
        return self.sim.intraday_bars(symbol, minutes, days)

    def expirations(self, symbol, count=4, *, timeout=None):
        self._check("expirations", [symbol])
        return self.sim.expirations(symbol, count)

    def option_chain(self, symbol, expiration, strike_band_pct=5.0, *, timeout=None):
        self._check("option_chain", [symbol])
        return self.sim.option_chain(symbol, expiration, strike_band_pct)


@pytest.fixture
def fake(monkeypatch):
    yield from fake_yahoo(monkeypatch)


@pytest.fixture
def pair(fake, tmp_path):
    yahoo = YahooProvider(YahooConfig(state_dir=str(tmp_path), requests_per_minute=6000, request_burst=100),
                          clock=lambda: MARKET_TIME)
    provider = FallbackProvider(Primary(), yahoo, clock=Clock(1000.0))
    yield provider
    provider.close()


def test_a_quote_batch_schwab_fails_is_asked_of_yahoo_and_says_who_answered(pair, fake):
    pair.primary.fail["*"] = "deadline"
    quotes = pair.quotes(["AAPL", "MSFT"])
    assert list(quotes.index) == ["AAPL", "MSFT"] and quotes.loc["AAPL", "price"] == spot_of("AAPL")
    assert quotes.attrs["provider"] == "yahoo" and quotes.attrs["answered_by"] == {"AAPL": "yahoo", "MSFT": "yahoo"}
    assert pair.request_counts() == {"schwab": {"timeout": 1}, "yahoo": {"ok": 1}}


def test_only_the_symbols_missing_from_schwabs_batch_are_asked_of_yahoo(pair, fake):
    pair.primary.unknown = {"BRK.B"}
    quotes = pair.quotes(["AAPL", "BRK.B", "MSFT"])
    assert list(quotes.index) == ["AAPL", "BRK.B", "MSFT"] and quotes.errors == {}
    assert [params["symbols"] for _, params in fake.data_requests("quote")] == ["BRK-B"]
    assert quotes.attrs["answered_by"] == {"AAPL": "schwab", "BRK.B": "yahoo", "MSFT": "schwab"}
    assert quotes.attrs["provider"] == "schwab+yahoo" and quotes.loc["BRK.B", "price"] == spot_of("BRK-B")
    assert pair.request_counts() == {"schwab": {"ok": 1}, "yahoo": {"ok": 1}}


def test_a_symbol_neither_knows_stays_in_errors_with_both_reasons(pair, fake):
    pair.primary.unknown = {"ZZZZ"}
    fake.faults["ZZZZ"] = "unknown"
    quotes = pair.quotes(["AAPL", "ZZZZ"])
    assert list(quotes.index) == ["AAPL"]
    assert quotes.errors["ZZZZ"] == ("schwab: quotes: Schwab does not know symbol ZZZZ; fallback yahoo: "
                                     "yahoo quotes: Yahoo does not know ZZZZ (absent from its answer)")


def test_a_schwab_batch_answered_whole_never_asks_yahoo(pair, fake):
    quotes = pair.quotes(["AAPL", "MSFT"])
    assert quotes.attrs["provider"] == "schwab" and fake.requests == []


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_daily_bars_fall_back_on_every_provider_failure_provider_wide_or_the_symbols(pair, fake, failure):
    pair.primary.fail["TSLA"] = failure
    bars = pair.daily_bars("TSLA", days=365)
    assert bars.attrs["provider"] == "yahoo" and bars["close"].iloc[-1] == pytest.approx(spot_of("TSLA"))
    assert pair.daily_bars("AAPL", days=365).attrs["provider"] == "schwab"


def test_a_programming_error_is_not_a_provider_failure_and_does_not_fall_back(pair, fake):
    with pytest.raises(ValueError, match="days must be >= 1"):
        pair.daily_bars("AAPL", days=0)
    assert fake.requests == []


@pytest.mark.parametrize("call", [
    lambda p: p.expirations("TSLA"),
    lambda p: p.option_chain("TSLA", FRIDAY),
    lambda p: p.intraday_bars("TSLA", 5, 1),
])
def test_options_and_intraday_bars_never_fall_back(pair, fake, call):
    pair.primary.fail["TSLA"] = "auth"
    with pytest.raises(AuthError):
        call(pair)
    assert fake.requests == [] and pair.request_counts() == {"schwab": {"auth_error": 1}, "yahoo": {}}


@pytest.mark.parametrize("primary, yahoo_fault, raised, status", [
    ("auth", "unknown", BadPayload, None),        # only Yahoo's says something about the symbol
    ("auth", "rate_limit", AuthError, None),      # neither does: the primary's, so the cycle sees a dead login
    ("bad_payload", "rate_limit", BadPayload, None),  # only Schwab's does
    ("deadline", "unknown", DeadlineExceeded, None),  # both do: the primary's
    ("429", "timeout", DeadlineExceeded, None),
    ("circuit", "rate_limit", CircuitOpen, None),
])
def test_when_both_fail_the_error_about_the_item_wins_else_the_primarys(pair, fake, primary, yahoo_fault, raised,
                                                                       status):
    pair.primary.fail["TSLA"] = primary
    fake.faults["TSLA"] = yahoo_fault
    with pytest.raises(ProviderError) as info:
        pair.daily_bars("TSLA")
    assert type(info.value) is raised
    assert str(info.value).startswith("schwab: ") and "; fallback yahoo: yahoo daily bars TSLA: " in str(info.value)


def test_a_dead_schwab_login_does_not_fail_the_cycle_over_the_one_symbol_yahoo_lacks(pair, fake, tmp_path):
    pair.primary.fail["*"] = "auth"
    fake.faults["TSLA"] = "unknown"
    symbols = ["TSLA", "AAPL", "MSFT", "NVDA", "AMD"]  # TSLA first: met while Schwab is still being asked
    scan, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=pair, symbols=symbols)
    counts = scan.run_cycle()  # an AuthError reaching the scanner would fail the cycle as provider-wide
    assert counts["fresh"] == 4 and counts["failed"] == 1
    assert "TSLA" in scan.tally.failed and about_the_item(scan.tally.failed["TSLA"])


def test_with_both_providers_failing_as_a_whole_the_cycle_fails_with_schwabs_reason(pair, fake, tmp_path):
    pair.primary.fail["*"] = "auth"
    scan, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=pair, symbols=["AAPL", "MSFT"])
    for symbol in ("AAPL", "MSFT"):
        fake.faults[symbol] = "rate_limit"
    with pytest.raises(scanner.ProviderDown, match="the provider refused our credentials: schwab: schwab token"):
        scan.run_cycle()


def test_a_primary_failing_as_a_whole_is_skipped_for_the_cooldown_then_tried_again(pair, fake):
    pair.primary.fail["*"] = "deadline"
    for symbol in ("AAPL", "MSFT", "NVDA"):
        assert pair.daily_bars(symbol).attrs["provider"] == "yahoo"
    asked = len(pair.primary.calls)
    assert pair.daily_bars("AMD").attrs["provider"] == "yahoo" and pair.quotes(["AMD"]).attrs["provider"] == "yahoo"
    assert len(pair.primary.calls) == asked  # skipped: no more deadlines spent on it
    assert pair.request_counts()["schwab"] == {"timeout": 3, "circuit_open": 2}
    pair.primary.fail.clear()
    pair.circuit._clock.now += 61  # the cool-off is over: one trial, which succeeds
    assert pair.daily_bars("AMD").attrs["provider"] == "schwab"
    assert pair.daily_bars("META").attrs["provider"] == "schwab" and len(pair.primary.calls) == asked + 2


def test_the_symbols_own_failures_never_make_the_primary_skipped(pair, fake):
    pair.primary.fail["TSLA"] = "bad_payload"
    for _ in range(6):
        pair.daily_bars("TSLA")
    assert len(pair.primary.calls) == 6 and pair.daily_bars("AAPL").attrs["provider"] == "schwab"


def test_while_the_primary_is_skipped_yahoos_own_failure_is_raised_as_it_is(pair, fake):
    pair.primary.fail["*"] = "auth"
    for symbol in ("AAPL", "MSFT", "NVDA"):
        pair.daily_bars(symbol)
    fake.faults["TSLA"] = "rate_limit"
    with pytest.raises(HttpStatusError) as info:
        pair.daily_bars("TSLA")
    assert info.value.status == 429 and "circuit open for schwab" in str(info.value)


class Reports:
    """The part of a worker context `scanner.report` talks to."""

    def report(self, **fields):
        self.fields = fields


def test_a_watchlist_cycle_with_schwab_down_stores_yahoos_quotes_and_reports_both_providers(pair, fake, tmp_path):
    pair.primary.fail["*"] = "auth"
    scan, ctx = make_scan(watchlist.WatchlistScan, "watchlist", tmp_path, provider=pair, batch_size=50)
    counts = scan.run_cycle()
    symbols = ctx.options["symbols"]
    assert counts["stored"] == counts["fresh"] == len(symbols) and counts["quarantined"] == 0
    reports = Reports()
    timetable = market_hours.Timetable(scanner.schedule_of(ctx), ctx.spec.interval, market_hours.utc_now)
    scanner.report(reports, scan, scan.quarantine, timetable)
    batches = -(-len(symbols) // 50)
    assert reports.fields["provider_requests"] == {
        "schwab": {"auth_error": 3, "circuit_open": batches - 3}, "yahoo": {"ok": batches}}


def test_a_technical_cycle_with_one_symbol_schwab_lacks_gets_it_from_yahoo(pair, fake, tmp_path):
    pair.primary.fail["TSLA"] = "bad_payload"
    scan, _ = make_scan(technical.MacdScan, "macd", tmp_path, provider=pair, symbols=["AAPL", "TSLA", "MSFT"])
    assert scan.run_cycle()["fresh"] == 3
    assert pair.request_counts() == {"schwab": {"ok": 2, "bad_payload": 1}, "yahoo": {"ok": 1}}


def test_open_provider_pairs_schwab_with_yahoo_only_when_fallback_is_set(fake, tmp_path):
    section = {"kind": "schwab", "fallback": "yahoo", "request_timeout": 5.0, "requests_per_minute": 120}
    provider = scanner.open_provider(section, str(tmp_path))
    try:
        assert isinstance(provider, FallbackProvider) and provider.name == "schwab+yahoo"
        assert (provider.primary.name, provider.fallback.name) == ("schwab", "yahoo")
        assert provider.fallback.config.call_timeout_s == 5.0
    finally:
        provider.close()
    assert scanner.open_provider({"kind": "yahoo"}, str(tmp_path)).name == "yahoo"
    assert scanner.open_provider({"kind": "schwab", "fallback": ""}, str(tmp_path)).name == "schwab"


def test_config_takes_kind_yahoo_and_a_yahoo_fallback_for_schwab_only():
    def provider(**table):
        return configs.from_tables({**configs.tables({"w": {"kind": "watchlist", "interval": 60}}),
                                    "provider": table})

    assert provider(kind="yahoo").raw["provider"]["kind"] == "yahoo"
    assert provider(kind="schwab", fallback="yahoo").raw["provider"]["fallback"] == "yahoo"
    with pytest.raises(config_module.ConfigError, match=r"provider.fallback = 'polygon': allowed is \"\" \(none\) "
                                                        r"or yahoo"):
        provider(kind="schwab", fallback="polygon")
    with pytest.raises(config_module.ConfigError, match=r"provider.fallback = 'yahoo': only kind = \"schwab\" takes "
                                                        r"a fallback \(kind is 'sim'\)"):
        provider(fallback="yahoo")
    with pytest.raises(config_module.ConfigError, match=r"kind is 'yahoo'\); remove it, or use kind = 'yahoo' alone"):
        provider(kind="yahoo", fallback="yahoo")
