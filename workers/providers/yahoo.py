"""`yahoo`: market data from Yahoo Finance through the yfinance library.

For users without Schwab API access (`[provider] kind = "yahoo"`), and as
Schwab's fallback for quotes and daily bars (`fallback = "yahoo"`, see
fallback.py). yfinance is imported when this provider is built, never before:
the simulated market does not pay for it. What each method asks Yahoo:

  quotes()         Yahoo's batch quote endpoint (/v7/finance/quote), one request
                   per QUOTES_PER_REQUEST symbols, through yfinance's session
                   layer (`yfinance.data.YfData`: Yahoo's cookie and crumb, the
                   browser TLS fingerprint). yfinance's public quote calls cost
                   one request per symbol: 174 a minute for the watchlist.
  daily_bars()     Ticker.history(period=<smallest Yahoo range covering days>, "1d")
  intraday_bars()  Ticker.history(period="<days>d", interval="<minutes>m")
  expirations()    Ticker.options (the Ticker is kept for the chains that follow)
  option_chain()   Ticker.option_chain(date)

Shapes and units are those of base.py; yahoo_answers.py converts Yahoo's
conventions (symbols aside, which `yahoo_symbol` spells Yahoo's way: BRK.B and
BRK/B -> BRK-B, $SPX -> ^SPX) and computes the delta Yahoo does not give
(Black-Scholes from each contract's implied volatility; the rate, dividend
and time conventions are documented there).

Deadlines: a yfinance call cannot be given a total deadline from outside the
library. One call may make several HTTP requests (a timezone lookup the first
time a symbol's history is asked, Yahoo's cookie and crumb, a retry with its
other cookie strategy after an HTTP error), each bounded only by its own
timeout: history and the batch quote take `timeout` (request_timeout is
passed); Ticker.options, option_chain and the cookie and crumb requests take
none and use yfinance's 30 s, the timezone lookup its 10 s. With curl_cffi (yfinance's default backend) a
request's timeout bounds its whole transfer; with plain requests
(YF_DISABLE_CURL_CFFI=1) only each socket read, so a trickling server holds it
forever. A thread or a signal could abandon such a call but not stop it, and
yfinance holds a lock across its cookie requests. What bounds a call is the
supervisor: the worker beats before every call, a call that never returns
silences it, and heartbeat_timeout later its process group is killed and the
successor quarantines the item. `timeout` only shortens the common case.

Budget: Yahoo publishes none. Every call takes one token from a token bucket
shared by the worker processes (budget.py), `yahoo-requests.bucket` in
state_dir, apart from Schwab's, `[provider] requests_per_minute` a minute;
running dry is BudgetExhausted, which quarantines nothing. yfinance's extra
requests (cookie and crumb once per process, the timezone lookup while a
symbol is not yet in its cache, kept in `state_dir/yahoo-cache`) are not
counted. The embedded defaults' cycles cost, in Yahoo calls: watchlist 4 a
minute (174 symbols in batches of 50), whale_flows 100 chains per 5 minutes
(the expirations once a day), macd, vpb and ttm each symbol's bars once a day
(shared through the store, workers/bars.py): about 24 a minute once the
first fill (174 histories, 25 expiration lists) is done.

Errors: every yfinance call and the parsing of its answer run inside one
boundary (`_call`); whatever yfinance raises or returns becomes a
ProviderError naming the symbol, never a crash:
  YFRateLimitError, HTTP 429              HttpStatusError 429 (quarantines nothing)
  a timeout (curl_cffi, requests, socket) DeadlineExceeded
  another HTTP status; "Yahoo is down"    HttpStatusError with that status (503)
  HTTP 404 (a symbol Yahoo does not
  know), no data for the symbol
  (delisted), an empty, partial or
  malformed answer                        BadPayload
  a connection failure                    ProviderError
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import os
import re
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from .base import (BadPayload, DeadlineExceeded, HttpStatusError, Provider, ProviderError,
                   QuoteBatch)
from .budget import RequestBudget
from .yahoo_answers import (NEW_YORK, chain, daily, intraday, parse_quote, quote_records, short,
                            weekly)

QUOTE_URL = "https://query1.finance.yahoo.com/v7/finance/quote"
QUOTE_FIELDS = ("symbol,regularMarketPrice,regularMarketPreviousClose,regularMarketChange,"
                "regularMarketChangePercent,regularMarketVolume,regularMarketOpen,regularMarketDayHigh,"
                "regularMarketDayLow,regularMarketTime")
QUOTES_PER_REQUEST = 100
INTRADAY_MINUTES = (1, 5, 15, 30)  # Yahoo has no 10-minute bars
# Yahoo's history ranges and the fewest calendar days each covers.
RANGES = ((28, "1mo"), (89, "3mo"), (181, "6mo"), (365, "1y"), (730, "2y"), (1826, "5y"),
          (3652, "10y"))
_SYMBOL = re.compile(r"^[A-Z$^][A-Z0-9./$^-]{0,11}$")
_DEFAULT = object()


@dataclass(frozen=True)
class YahooConfig:
    """Settings for the yahoo provider; `from_mapping` builds it from a config table."""

    state_dir: str | None = None  # the request bucket and yfinance's caches live here
    call_timeout_s: float = 10.0  # handed to yfinance as its per-request timeout
    requests_per_minute: int = 120
    request_burst: int = 10

    def __post_init__(self):
        if not self.call_timeout_s > 0:
            raise ValueError("yahoo call_timeout_s must be > 0")
        if not 1 <= self.request_burst < self.requests_per_minute:
            raise ValueError("yahoo request_burst must be >= 1 and below requests_per_minute")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> "YahooConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown yahoo provider option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(known))}")
        return cls(**options)


def open_from_config(section: Mapping[str, Any], state_dir: str) -> "YahooProvider":
    """Build from the [provider] table: request_timeout (yfinance's per-request timeout) and
    requests_per_minute (Yahoo's own bucket, at least 2). Other providers' keys are ignored."""
    per_minute = max(2, int(section.get("requests_per_minute", 120)))
    return YahooProvider(YahooConfig(
        state_dir=state_dir, call_timeout_s=float(section.get("request_timeout", 10.0)),
        requests_per_minute=per_minute, request_burst=min(10, max(1, per_minute // 2))))


def _import_yfinance():
    try:
        return importlib.import_module("yfinance"), importlib.import_module("yfinance.data")
    except ImportError as exc:
        raise ProviderError(f"provider kind 'yahoo' needs the yfinance package, which did not "
                            f"import ({exc}); it is in install_requires: reinstall") from None


class YahooProvider(Provider):
    """Yahoo Finance behind the Provider interface. Not thread-safe: one per process."""

    name = "yahoo"

    def __init__(self, config: YahooConfig, *, clock: Callable[[], dt.datetime] | None = None,
                 budget: RequestBudget | None | object = _DEFAULT):
        self.config = config
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        state_dir = config.state_dir or os.path.join(tempfile.gettempdir(),
                                                     f"market-data-worker-{os.getuid()}")
        self._yf, data = _import_yfinance()
        # yfinance's sqlite caches (cookie, symbol -> timezone) default to the home directory,
        # which the systemd unit hides; before any use, send them to the state dir.
        self._yf.set_tz_cache_location(os.path.join(state_dir, "yahoo-cache"))
        # Raise instead of logging and returning an empty frame: errors must say what failed.
        self._yf.config.debug.hide_exceptions = False
        self._data = data.YfData()
        if budget is _DEFAULT:
            budget = RequestBudget(os.path.join(state_dir, "yahoo-requests.bucket"),
                                   limit=config.requests_per_minute, burst=config.request_burst)
        self.budget = budget
        self._option_tickers: dict[str, Any] = {}  # symbol -> the Ticker its expirations came from

    def close(self) -> None:
        self._option_tickers.clear()

    # -- the one error boundary -----------------------------------------------------

    def _call(self, where: str, symbol: str | None, timeout: float, fetch: Callable[[], Any],
              parse: Callable[[Any], Any]):
        """One yfinance call: a budget token, the call, its answer parsed; only ProviderErrors out."""
        if self.budget is not None:
            try:
                self.budget.acquire(time.monotonic() + timeout)
            except ProviderError as exc:
                exc.symbol = exc.symbol or symbol
                raise
        try:
            raw = fetch()
        except Exception as exc:  # whatever the library raises: named, classified
            raise library_error(exc, where, symbol, timeout) from exc
        try:
            return parse(raw)
        except ProviderError:
            raise
        except Exception as exc:  # an answer odd enough to break the parser
            raise BadPayload(f"{where}: unusable answer from Yahoo ({type(exc).__name__}: "
                             f"{short(exc)})", symbol=symbol) from exc

    def _for_symbol(self, symbol, what, fetch, parse, timeout, ticker=None):
        if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
            raise ProviderError(f"yahoo {what}: not a valid symbol: {symbol!r}", symbol=str(symbol))
        limit = self._timeout(timeout)
        where = f"yahoo {what} {symbol}"
        return self._call(where, symbol, limit,
                          lambda: fetch(ticker or self._ticker(symbol), limit),
                          lambda raw: parse(raw, where))

    def _ticker(self, symbol: str):
        return self._yf.Ticker(yahoo_symbol(symbol))

    def _timeout(self, timeout: float | None) -> float:
        return self.config.call_timeout_s if timeout is None else float(timeout)

    def _now(self) -> pd.Timestamp:
        return pd.Timestamp(self._clock()).tz_convert(NEW_YORK)

    # -- quotes ---------------------------------------------------------------------

    def quotes(self, symbols: Iterable[str], *, timeout: float | None = None) -> QuoteBatch:
        wanted = list(dict.fromkeys([symbols] if isinstance(symbols, str) else symbols))
        errors: dict[str, str] = {}
        asked: dict[str, str] = {}  # Yahoo's spelling -> ours
        for symbol in wanted:
            if isinstance(symbol, str) and _SYMBOL.match(symbol):
                asked[yahoo_symbol(symbol)] = symbol
            else:
                errors[str(symbol)] = f"not a valid symbol: {symbol!r}"
        limit = self._timeout(timeout)
        names = list(asked)
        rows: dict[str, dict] = {}
        whole_failure = None
        for start in range(0, len(names), QUOTES_PER_REQUEST):
            chunk = names[start:start + QUOTES_PER_REQUEST]
            where = f"yahoo quotes {asked[chunk[0]]}" + (
                f"..{asked[chunk[-1]]} ({len(chunk)} symbols)" if len(chunk) > 1 else "")
            params = {"symbols": ",".join(chunk), "fields": QUOTE_FIELDS, "formatted": "false"}
            try:
                records = self._call(where, None, limit,
                                     lambda: self._data.get_raw_json(QUOTE_URL, params=params,
                                                                     timeout=limit),
                                     lambda raw: quote_records(raw, where))
            except ProviderError as exc:
                whole_failure = whole_failure or exc
                errors.update((asked[name], str(exc)) for name in chunk)
                continue
            for name in chunk:
                try:
                    rows[asked[name]] = parse_quote(asked[name], records.get(name))
                except BadPayload as exc:
                    errors[asked[name]] = str(exc)
        if whole_failure is not None and not rows:
            raise whole_failure  # nothing came back: the caller learns how the request failed
        return QuoteBatch.build({s: rows[s] for s in wanted if s in rows}, errors)

    # -- bars -----------------------------------------------------------------------

    def daily_bars(self, symbol: str, days: int = 365, *,
                   timeout: float | None = None) -> pd.DataFrame:
        if days < 1:
            raise ValueError("days must be >= 1")
        since = pd.Timestamp(self._now().date() - dt.timedelta(days=days))
        period = next((name for covered, name in RANGES if covered >= days), "max")
        return self._for_symbol(
            symbol, "daily bars",
            lambda ticker, limit: ticker.history(period=period, interval="1d", auto_adjust=False,
                                                 actions=False, timeout=limit),
            lambda raw, where: daily(raw, where, symbol, since), timeout)

    def intraday_bars(self, symbol: str, minutes: int = 5, days: int = 1, *,
                      timeout: float | None = None) -> pd.DataFrame:
        if minutes not in INTRADAY_MINUTES or not 1 <= days <= 7:
            raise ValueError("Yahoo offers intraday bars of 1, 5, 15 or 30 minutes over 1..7 days")
        return self._for_symbol(
            symbol, "intraday bars",
            lambda ticker, limit: ticker.history(period=f"{days}d", interval=f"{minutes}m",
                                                 auto_adjust=False, actions=False, timeout=limit),
            lambda raw, where: intraday(raw, where, symbol), timeout)

    # -- options --------------------------------------------------------------------

    def expirations(self, symbol: str, count: int = 4, *,
                    timeout: float | None = None) -> list[dt.date]:
        today = self._now().date()
        used = {}

        def fetch(ticker, limit):  # a fresh Ticker each time: yesterday's expirations are stale
            used["ticker"] = ticker
            return ticker.options

        dates = self._for_symbol(symbol, "expirations", fetch,
                                 lambda raw, where: weekly(raw, where, symbol, today), timeout)
        self._option_tickers[symbol] = used["ticker"]  # its chains need no second listing
        return dates[:count]

    def option_chain(self, symbol: str, expiration: dt.date, strike_band_pct: float = 5.0, *,
                     timeout: float | None = None) -> pd.DataFrame:
        now = self._now()
        return self._for_symbol(
            symbol, f"option chain {expiration.isoformat()}",
            lambda ticker, limit: ticker.option_chain(expiration.isoformat()),
            lambda raw, where: chain(raw, where, symbol, expiration, strike_band_pct, now),
            timeout, ticker=self._option_tickers.get(symbol))


# --- symbols and errors -----------------------------------------------------------------

def yahoo_symbol(symbol: str) -> str:
    """Our spelling -> Yahoo's: BRK.B and BRK/B -> BRK-B, $SPX -> ^SPX; SHOP.TO stays."""
    if symbol.startswith("$"):
        symbol = "^" + symbol[1:]
    return re.sub(r"[./]([A-Z])$", r"-\1", symbol)


def library_error(exc: BaseException, where: str, symbol: str | None,
                  timeout: float) -> ProviderError:
    """What a yfinance exception means, as the ProviderError the scanners judge by."""
    if isinstance(exc, ProviderError):
        return exc
    names = {cls.__name__ for cls in type(exc).__mro__}
    detail = short(exc)
    if "YFRateLimitError" in names:
        return HttpStatusError(f"{where}: rate limited by Yahoo (HTTP 429): {detail}",
                               status=429, symbol=symbol)
    if names & {"Timeout", "TimeoutError"}:  # curl_cffi's and requests' Timeout, socket.timeout
        return DeadlineExceeded(f"{where}: no answer within yfinance's per-request timeout of "
                                f"{timeout:g}s ({type(exc).__name__})", symbol=symbol)
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if isinstance(status, int) and status >= 400:
        excerpt = short(getattr(response, "text", ""), 200)
        if status == 404:  # how Yahoo answers for a symbol it does not know
            return BadPayload(f"{where}: Yahoo does not know {symbol or 'them'} (HTTP 404: {excerpt})",
                              symbol=symbol)
        return HttpStatusError(f"{where}: HTTP {status} from Yahoo: {excerpt}", status=status,
                               excerpt=excerpt, symbol=symbol)
    if "CURRENTLY DOWN" in str(exc).upper():
        return HttpStatusError(f"{where}: Yahoo Finance says it is down: {detail}", status=503,
                               symbol=symbol)
    if "YFTickerMissingError" in names:
        return BadPayload(f"{where}: Yahoo has no data for {symbol} ({detail})", symbol=symbol)
    if "YFException" in names or isinstance(exc, (ValueError, LookupError, TypeError,
                                                  AttributeError)):
        return BadPayload(f"{where}: unusable answer from Yahoo ({type(exc).__name__}: "
                          f"{detail})", symbol=symbol)
    if isinstance(exc, OSError):
        return ProviderError(f"{where}: connection failed ({type(exc).__name__}: {detail})",
                             symbol=symbol)
    return ProviderError(f"{where}: yfinance failed ({type(exc).__name__}: {detail})",
                         symbol=symbol)
