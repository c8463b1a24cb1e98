"""What yfinance returns, turned into the shapes and units of base.py (for yahoo.py).

Each function takes one yfinance answer and `where` (the call and symbol, for
messages) and returns base.py's shape, or raises BadPayload naming the symbol
and what was wrong: an empty frame, a missing column, NaN where a number is
needed, a list that is not one. Yahoo's conventions, converted:

- Quotes: the change is computed from regularMarketPrice and
  regularMarketPreviousClose; Yahoo's change fields are used only when the
  previous close is missing. A symbol absent from the answer is one Yahoo
  does not know.
- Daily bars are not adjusted for dividends (yahoo.py asks auto_adjust=False:
  closes are split-adjusted only, as Schwab's are). A row missing its open,
  high, low or close is dropped (Yahoo sends nulls for halted or not yet
  opened sessions); a missing volume is 0. Dates are naive New York midnights.
- Chains: Yahoo's impliedVolatility is a fraction; `iv` = 100 x it, in
  percent. Below MIN_IV_PCT it is NaN: those are Yahoo's placeholders (1e-05,
  0.0078125) for contracts its solver gave up on. `mark` is the bid/ask
  midpoint when both are quoted (bid > 0, ask >= bid), else the last price
  (Yahoo zeroes bid and ask outside the session). A missing volume or open
  interest is 0; a contract without a strike makes the answer unusable.
- Delta: Yahoo gives no Greeks, so delta is Black-Scholes (European) from the
  contract's own iv (`bs_delta`):
      d1 = (ln(S/K) + (r - q + iv^2/2) T) / (iv sqrt(T))
      call delta = e^(-qT) N(d1),  put delta = e^(-qT) (N(d1) - 1)
  S is the underlying's regularMarketPrice in the chain's answer. r is
  RISK_FREE_RATE, 4 % a year continuously compounded: a fixed assumption near
  short US Treasury yields; one percentage point off moves a 30-day
  at-the-money delta by about 0.004. q is DIVIDEND_YIELD, 0: dividends are
  ignored, which overstates a call's delta (and a put's magnitude is
  understated) by about 0.008 for a 2 % yield at 30 days. T is the calendar
  time from now to 16:00 New York on the expiration date, in 365-day years,
  at least one hour (`years_to_expiry`). Delta is NaN where iv is.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import BadPayload, bars_frame, chain_frame

NEW_YORK = "America/New_York"
RISK_FREE_RATE = 0.04
DIVIDEND_YIELD = 0.0
MIN_IV_PCT = 1.0
_BAR_COLUMNS = ("Open", "High", "Low", "Close", "Volume")
_CHAIN_COLUMNS = ("strike", "bid", "ask", "lastPrice", "volume", "openInterest",
                  "impliedVolatility")


def short(value: Any, limit: int = 160) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def quote_records(data: Any, where: str) -> dict[str, Mapping]:
    """Yahoo's quote answer -> {Yahoo symbol: its record}; a symbol Yahoo does not know is absent."""
    response = data.get("quoteResponse") if isinstance(data, dict) else None
    if not isinstance(response, dict):
        raise BadPayload(f"{where}: no 'quoteResponse' object in Yahoo's answer")
    if response.get("error"):
        raise BadPayload(f"{where}: Yahoo answered an error: {short(response['error'])}")
    result = response.get("result") or []
    if not isinstance(result, list):
        raise BadPayload(f"{where}: 'quoteResponse.result' is not a list")
    return {r["symbol"]: r for r in result if isinstance(r, dict) and isinstance(r.get("symbol"), str)}


def parse_quote(symbol: str, record: Mapping | None) -> dict:
    """One symbol's quote record -> {price, daily_change, daily_change_pct, volume, open, high, low,
    session}: the session so far, for today's daily bar (NaN, None where Yahoo says nothing)."""
    if record is None:
        raise BadPayload(f"yahoo quotes: Yahoo does not know {symbol} (absent from its answer)",
                         symbol=symbol)
    price = finite(record.get("regularMarketPrice"))
    if price is None:
        raise BadPayload(f"yahoo quotes: {symbol} has no regularMarketPrice", symbol=symbol)
    previous = finite(record.get("regularMarketPreviousClose"))
    if previous is not None and previous > 0:
        change, pct = price - previous, (price / previous - 1) * 100
    else:
        change = finite(record.get("regularMarketChange")) or 0.0
        pct = finite(record.get("regularMarketChangePercent")) or 0.0
    volume = finite(record.get("regularMarketVolume")) or 0.0
    stamp = finite(record.get("regularMarketTime"))
    session = (pd.Timestamp(int(stamp), unit="s", tz="UTC").tz_convert("America/New_York").date().isoformat()
               if stamp and stamp > 0 else None)
    # regularMarketPrice is the regular session's last trade (extended hours are postMarketPrice): both
    return {"price": price, "daily_change": round(change, 6), "daily_change_pct": round(pct, 6),
            "volume": int(volume), "session": session, "session_last": price,
            **{key: finite(record.get(field)) or math.nan for key, field in (
                ("open", "regularMarketOpen"), ("high", "regularMarketDayHigh"), ("low", "regularMarketDayLow"))}}


def _bars(raw: Any, where: str, symbol: str):
    """A yfinance history frame -> (time index, open, high, low, close, volume) of its whole rows."""
    if not isinstance(raw, pd.DataFrame):
        raise BadPayload(f"{where}: yfinance returned {type(raw).__name__}, not a DataFrame",
                         symbol=symbol)
    if raw.empty:
        raise BadPayload(f"{where}: Yahoo returned no bars", symbol=symbol)
    missing = [c for c in _BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise BadPayload(f"{where}: bars lack column(s) {', '.join(missing)}", symbol=symbol)
    if not isinstance(raw.index, pd.DatetimeIndex):
        raise BadPayload(f"{where}: bars are indexed by {type(raw.index).__name__}, not by time",
                         symbol=symbol)
    values = {c: pd.to_numeric(raw[c], errors="coerce").to_numpy(dtype="float64")
              for c in _BAR_COLUMNS}
    whole = ~np.any([np.isnan(values[c]) for c in _BAR_COLUMNS[:4]], axis=0)
    if not whole.any():
        raise BadPayload(f"{where}: none of Yahoo's {len(raw)} bars has an open, high, low and "
                         f"close", symbol=symbol)
    volume = np.nan_to_num(values["Volume"][whole], nan=0.0)
    return (raw.index[whole], *(values[c][whole] for c in _BAR_COLUMNS[:4]), volume)


def daily(raw: Any, where: str, symbol: str, since: pd.Timestamp) -> pd.DataFrame:
    """A yfinance daily history -> bars on naive New York dates from `since` on."""
    index, *columns = _bars(raw, where, symbol)
    if index.tz is not None:
        index = index.tz_convert(NEW_YORK).tz_localize(None)
    frame = bars_frame(pd.DatetimeIndex(index.normalize().to_numpy(), name="date"), *columns)
    frame = frame[~frame.index.duplicated(keep="last") & (frame.index >= since)]
    if frame.empty:
        raise BadPayload(f"{where}: no bar since {since.date()}", symbol=symbol)
    return frame


def intraday(raw: Any, where: str, symbol: str) -> pd.DataFrame:
    """A yfinance intraday history -> bars on tz-aware New York bar start times."""
    index, *columns = _bars(raw, where, symbol)
    index = index.tz_localize(NEW_YORK) if index.tz is None else index.tz_convert(NEW_YORK)
    frame = bars_frame(pd.DatetimeIndex(index, name="datetime"), *columns)
    return frame[~frame.index.duplicated(keep="last")]


def weekly(raw: Any, where: str, symbol: str, today: dt.date) -> list[dt.date]:
    """One expiration per week after today: the last one on or before Friday."""
    if not isinstance(raw, (tuple, list)):
        raise BadPayload(f"{where}: expirations are a {type(raw).__name__}, not a list",
                         symbol=symbol)
    by_week: dict[tuple[int, int], dt.date] = {}
    for text in raw:
        try:
            day = dt.date.fromisoformat(str(text)[:10])
        except ValueError:
            raise BadPayload(f"{where}: bad expiration date {text!r}", symbol=symbol) from None
        if day > today and day.weekday() <= 4:
            week = day.isocalendar()[:2]
            by_week[week] = max(day, by_week.get(week, day))
    return sorted(by_week.values())


def chain(raw: Any, where: str, symbol: str, expiration: dt.date, band_pct: float,
          now: pd.Timestamp) -> pd.DataFrame:
    """A yfinance option chain (calls, puts, underlying) -> base.py's chain within the band."""
    sides = [(kind, getattr(raw, attr, None)) for kind, attr in (("CALL", "calls"), ("PUT", "puts"))]
    if all(frame is None for _, frame in sides):
        raise BadPayload(f"{where}: Yahoo has no option chain for it", symbol=symbol)
    underlying = getattr(raw, "underlying", None)
    spot = finite(underlying.get("regularMarketPrice")) if isinstance(underlying, Mapping) else None
    if spot is None or spot <= 0:
        raise BadPayload(f"{where}: no underlying regularMarketPrice in the chain", symbol=symbol)
    parts = [_contracts(kind, frame, where, symbol) for kind, frame in sides if frame is not None]
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    keep = np.abs(columns["strike"] / spot - 1) <= band_pct / 100
    columns = {name: values[keep] for name, values in columns.items()}
    years = years_to_expiry(now, expiration)
    columns["delta"] = np.round(bs_delta(columns["type"] == "CALL", spot, columns["strike"],
                                         columns["iv"] / 100, years), 4)
    rows = int(keep.sum())
    columns.update(expiry=np.full(rows, expiration, dtype=object),
                   dte=np.full(rows, (expiration - now.date()).days),
                   underlying_price=np.full(rows, spot))
    return chain_frame(columns)


def _contracts(kind: str, frame: Any, where: str, symbol: str) -> dict[str, np.ndarray]:
    if not isinstance(frame, pd.DataFrame):
        raise BadPayload(f"{where}: {kind.lower()}s are a {type(frame).__name__}, not a DataFrame",
                         symbol=symbol)
    missing = [c for c in _CHAIN_COLUMNS if c not in frame.columns]
    if missing:
        raise BadPayload(f"{where}: {kind.lower()}s lack column(s) {', '.join(missing)}",
                         symbol=symbol)

    def number(column):
        return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype="float64")

    strike = number("strike")
    if np.isnan(strike).any():
        raise BadPayload(f"{where}: a {kind.lower()} without a strike in Yahoo's chain",
                         symbol=symbol)
    bid, ask, last = number("bid"), number("ask"), number("lastPrice")
    with np.errstate(invalid="ignore"):
        quoted = (bid > 0) & (ask >= bid)
    iv = number("impliedVolatility") * 100
    iv[~(np.isfinite(iv) & (iv >= MIN_IV_PCT))] = np.nan
    return {"type": np.full(strike.size, kind, dtype=object), "strike": strike, "bid": bid,
            "ask": ask, "last": last, "mark": np.where(quoted, (bid + ask) / 2, last),
            "volume": np.nan_to_num(number("volume"), nan=0.0).round().astype(np.int64),
            "open_interest": np.nan_to_num(number("openInterest"), nan=0.0).round()
            .astype(np.int64), "iv": iv}


# --- Black-Scholes ---------------------------------------------------------------------

_ERFC = np.vectorize(math.erfc, otypes=[float])


def years_to_expiry(now: pd.Timestamp, expiration: dt.date) -> float:
    """Calendar years from `now` to 16:00 New York on `expiration` (365-day years), >= 1 hour."""
    close = pd.Timestamp(dt.datetime.combine(expiration, dt.time(16, 0)), tz=NEW_YORK)
    return max((close - now).total_seconds(), 3600.0) / (365 * 86400)


def bs_delta(is_call, spot, strike, sigma, years, rate: float = RISK_FREE_RATE,
             dividend_yield: float = DIVIDEND_YIELD) -> np.ndarray:
    """Black-Scholes delta, signed (puts negative); `sigma` a fraction, `years` > 0. NaN where
    sigma or the strike is not a positive number."""
    is_call, strike, sigma = np.broadcast_arrays(np.asarray(is_call, dtype=bool),
                                                 np.asarray(strike, dtype=float),
                                                 np.asarray(sigma, dtype=float))
    valid = np.isfinite(sigma) & (sigma > 0) & np.isfinite(strike) & (strike > 0)
    sigma, strike = np.where(valid, sigma, 1.0), np.where(valid, strike, spot)
    d1 = ((np.log(spot / strike) + (rate - dividend_yield + sigma ** 2 / 2) * years)
          / (sigma * math.sqrt(years)))
    cdf = 0.5 * _ERFC(-d1 / math.sqrt(2))
    carry = math.exp(-dividend_yield * years)
    return np.where(valid, np.where(is_call, carry * cdf, carry * (cdf - 1)), np.nan)
