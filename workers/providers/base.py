"""The market-data provider interface, its result types and its errors.

Every scanner talks to one `Provider`. Two implementations exist: `sim` (a
deterministic simulated market, the default) and `schwab` (the Schwab Trader
API). A real provider bounds every call by a total deadline (`timeout=` seconds,
default from its config) and raises a `ProviderError` subclass when it cannot
answer in time; it never blocks past that deadline.

Units and shapes, identical for every provider:
- prices in USD, float64; volumes float64 in bars, int64 in quotes and chains;
- `daily_change_pct` is in percent (1.5 means +1.5 %);
- a quote's `open`, `high`, `low`, `session_last` (NaN when the source has none)
  and `session` ("YYYY-MM-DD", the New York date of the regular session it
  belongs to, or None) make it the session's bar so far: with `session_last`
  (the session's last trade; `price` when NaN) as the close and `volume`, the
  scanners update today's daily bar from it. `price` is the last trade at all,
  which after the close may be an extended-hours trade: it is what the
  watchlist shows, never a daily bar's close;
- option `iv` is implied volatility in PERCENT, as Schwab reports it (32.5 means
  32.5 %); divide by 100 for Black-Scholes;
- option `delta` is signed (puts negative); NaN when the source has none;
- daily bars are indexed by naive midnight dates, intraday bars by tz-aware
  America/New_York bar start times; both ascending.

Error messages say what failed and where (path, symbol, status) and never
contain tokens, keys or secrets.
"""
from __future__ import annotations

import abc
import datetime as dt
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

QUOTE_COLUMNS = ("price", "daily_change", "daily_change_pct", "volume", "open", "high", "low", "session_last",
                 "session")
BAR_COLUMNS = ("open", "high", "low", "close", "volume")
CHAIN_COLUMNS = ("type", "strike", "bid", "ask", "last", "mark", "volume", "open_interest",
                 "delta", "iv", "expiry", "dte", "underlying_price")
_CHAIN_DTYPES = {"type": object, "strike": "float64", "bid": "float64", "ask": "float64",
                 "last": "float64", "mark": "float64", "volume": "int64",
                 "open_interest": "int64", "delta": "float64", "iv": "float64",
                 "expiry": object, "dte": "int64", "underlying_price": "float64"}
assert tuple(_CHAIN_DTYPES) == CHAIN_COLUMNS


# --- errors -----------------------------------------------------------------

class ProviderError(Exception):
    """Base of every provider failure. `symbol` names the instrument when one is involved."""

    def __init__(self, message: str, *, symbol: str | None = None):
        super().__init__(message)
        self.symbol = symbol


class DeadlineExceeded(ProviderError):
    """The call (connect, send, wait, read, retries included) did not finish within its deadline."""


class HttpStatusError(ProviderError):
    """The server answered with an unexpected HTTP status; carries it and a short body excerpt."""

    def __init__(self, message: str, *, status: int, excerpt: str = "",
                 retry_after: float | None = None, symbol: str | None = None):
        super().__init__(message, symbol=symbol)
        self.status = status
        self.excerpt = excerpt
        self.retry_after = retry_after


class BadPayload(ProviderError):
    """The answer arrived but is unusable: junk JSON, truncated body, HTML page, missing field."""


class AuthError(ProviderError):
    """Credentials are missing, unreadable or rejected (401, refresh token expired)."""


class CircuitOpen(ProviderError):
    """The symbol failed repeatedly; calls for it are refused until the cool-off ends."""

    def __init__(self, message: str, *, symbol: str | None = None, retry_in: float = 0.0):
        super().__init__(message, symbol=symbol)
        self.retry_in = retry_in


class BudgetExhausted(ProviderError):
    """No request token could be had from the shared rate budget before the deadline."""


# --- result types -----------------------------------------------------------

class QuoteBatch(pd.DataFrame):
    """Quotes indexed by symbol (columns `QUOTE_COLUMNS`) plus `errors`: symbol -> reason.

    A symbol is either a row or a key of `errors`, never both. `errors` survives
    pandas operations that return a QuoteBatch (copy, sort_values, slicing).
    """

    _metadata = ["errors"]

    def __init__(self, *args, errors: Mapping[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if errors is not None or not hasattr(self, "errors"):
            self.errors = dict(errors or {})

    @property
    def _constructor(self):
        return QuoteBatch

    @classmethod
    def build(cls, rows: Mapping[str, Mapping[str, float]],
              errors: Mapping[str, str] | None = None) -> "QuoteBatch":
        """Make a batch from {symbol: {price, daily_change, daily_change_pct, volume[, open, high,
        low, session_last, session]}}; what a source lacks of the last five is NaN (None for session)."""
        symbols = list(rows)

        def floats(key):
            return pd.Series([float(rows[s].get(key, float("nan"))) for s in symbols], dtype="float64")

        frame = cls({
            "price": floats("price"), "daily_change": floats("daily_change"),
            "daily_change_pct": floats("daily_change_pct"),
            "volume": pd.Series([int(rows[s]["volume"]) for s in symbols], dtype="int64"),
            "open": floats("open"), "high": floats("high"), "low": floats("low"),
            "session_last": floats("session_last"),
            "session": pd.Series([rows[s].get("session") for s in symbols], dtype=object),
        }, errors=errors)
        frame.index = pd.Index(symbols, name="symbol", dtype=object)
        return frame


def bars_frame(index: pd.DatetimeIndex, open_, high, low, close, volume) -> pd.DataFrame:
    """Assemble a bars DataFrame with the standard columns, float64, ascending by time."""
    columns = {name: np.asarray(values, dtype="float64")
               for name, values in zip(BAR_COLUMNS, (open_, high, low, close, volume))}
    frame = pd.DataFrame(columns, index=pd.DatetimeIndex(index).as_unit("ns"), copy=False)
    return frame if frame.index.is_monotonic_increasing else frame.sort_index()


def chain_frame(columns: Mapping[str, Sequence] | None = None) -> pd.DataFrame:
    """Assemble an option-chain DataFrame from column arrays: `CHAIN_COLUMNS`, fixed
    dtypes, sorted by type (CALL first) then strike."""
    columns = columns or {}
    data = {name: np.asarray(columns.get(name, ()), dtype=dtype)
            for name, dtype in _CHAIN_DTYPES.items()}
    order = np.lexsort((data["strike"], data["type"].astype(str)))
    return pd.DataFrame({name: values[order] for name, values in data.items()}, copy=False)


# --- the interface ----------------------------------------------------------

class Provider(abc.ABC):
    """Market data in. Every method accepts `timeout` (seconds, total for the call)."""

    name: str = "provider"

    @abc.abstractmethod
    def quotes(self, symbols: Iterable[str], *, timeout: float | None = None) -> QuoteBatch:
        """Latest quote per symbol; a symbol's own failure goes to `errors`, never raises.

        Raises a ProviderError when the request failed as a whole and no quote
        came back (deadline, HTTP error, bad body, AuthError)."""

    @abc.abstractmethod
    def daily_bars(self, symbol: str, days: int = 365, *,
                   timeout: float | None = None) -> pd.DataFrame:
        """Daily OHLCV covering the last `days` calendar days (the running session's partial
        bar last, when the source has one)."""

    @abc.abstractmethod
    def intraday_bars(self, symbol: str, minutes: int = 5, days: int = 1, *,
                      timeout: float | None = None) -> pd.DataFrame:
        """Intraday OHLCV bars of `minutes` (1, 5, 10, 15, 30) over the last `days` sessions."""

    @abc.abstractmethod
    def expirations(self, symbol: str, count: int = 4, *,
                    timeout: float | None = None) -> list[dt.date]:
        """The next `count` weekly expirations after today (Thursday in a Friday-holiday week)."""

    @abc.abstractmethod
    def option_chain(self, symbol: str, expiration: dt.date, strike_band_pct: float = 5.0, *,
                     timeout: float | None = None) -> pd.DataFrame:
        """Contracts of one expiration with strikes within +-`strike_band_pct` % of spot."""

    def warnings(self) -> list[str]:
        """Short texts a person must act on soon although calls still work (a login about to
        expire), for the worker's status report; never raises. None by default."""
        return []

    def close(self) -> None:
        """Release sessions and files. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
