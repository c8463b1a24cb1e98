"""Schwab marketdata/v1 payloads -> the provider's frames and dicts.

Every function takes the decoded JSON as it came and either returns the parsed
value or raises BadPayload naming the endpoint, the symbol and the field, so a
malformed answer costs only the symbol it was for.

Option prices come in two spellings (bid/ask/last/mark and bidPrice/askPrice/
lastPrice/markPrice); both are accepted. Schwab's -999 "not available" becomes
NaN. `iv` stays in percent, as Schwab sends it.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .base import BadPayload, bars_frame, chain_frame

NEW_YORK = "America/New_York"

def number(record: Mapping, key: str, what: str, default=None) -> float:
    value = record.get(key, default) if isinstance(record, Mapping) else default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if value is None:
            raise BadPayload(f"{what}: field '{key}' missing")
        raise BadPayload(f"{what}: field '{key}' is not a number ({type(value).__name__})")
    return float(value)


def parse_quote(symbol: str, entry: Any, invalid: bool) -> dict:
    if invalid:
        raise BadPayload(f"quotes: Schwab does not know symbol {symbol} (invalidSymbols)")
    if not isinstance(entry, dict):
        raise BadPayload(f"quotes: {symbol} missing from the response")
    quote = entry.get("quote")
    what = f"quotes: {symbol}"
    if not isinstance(quote, dict):
        raise BadPayload(f"{what}: no 'quote' object")
    price = number(quote, "lastPrice", what)
    close = number(quote, "closePrice", what, default=0.0)
    if close > 0:
        change, pct = price - close, (price / close - 1) * 100
    else:
        change = number(quote, "netChange", what, default=0.0)
        pct = number(quote, "netPercentChange", what, default=0.0)
    # `regular` is the regular session alone: its last trade is the daily bar's close, while lastPrice
    # may be a later extended-hours trade.
    regular = entry.get("regular") if isinstance(entry.get("regular"), dict) else {}
    session_last = available(regular.get("regularMarketLastPrice"))
    trade_ms = regular.get("regularMarketTradeTime", quote.get("tradeTime"))
    session = None
    if isinstance(trade_ms, (int, float)) and not isinstance(trade_ms, bool) and trade_ms > 0:
        session = pd.Timestamp(int(trade_ms), unit="ms", tz="UTC").tz_convert(NEW_YORK).date().isoformat()
    return {"price": price, "daily_change": round(change, 6), "daily_change_pct": round(pct, 6),
            "volume": int(number(quote, "totalVolume", what, default=0)),
            "open": available(quote.get("openPrice")), "high": available(quote.get("highPrice")),
            "low": available(quote.get("lowPrice")), "session_last": session_last, "session": session}


def parse_candles(symbol: str, data: Any, daily: bool) -> pd.DataFrame:
    what = f"pricehistory {symbol}"
    if not isinstance(data, dict) or not isinstance(data.get("candles"), list):
        raise BadPayload(f"{what}: no 'candles' list in the response")
    candles = data["candles"]
    columns = {k: np.empty(len(candles)) for k in ("open", "high", "low", "close", "volume",
                                                   "datetime")}
    for i, candle in enumerate(candles):
        for key, values in columns.items():
            values[i] = number(candle, key, f"{what} candle {i}")
    stamps = pd.to_datetime(columns["datetime"].astype("int64"), unit="ms", utc=True)
    stamps = stamps.tz_convert(NEW_YORK)
    index = (pd.DatetimeIndex(stamps.normalize().tz_localize(None), name="date") if daily
             else pd.DatetimeIndex(stamps, name="datetime"))
    frame = bars_frame(index, columns["open"], columns["high"], columns["low"], columns["close"],
                       columns["volume"])
    return frame[~frame.index.duplicated(keep="last")]


def weekly_expirations(symbol: str, data: Any, today: dt.date) -> list[dt.date]:
    """One expiration per week: the last one on or before Friday (Thursday in holiday weeks)."""
    if not isinstance(data, dict) or not isinstance(data.get("expirationList"), list):
        raise BadPayload(f"expirationchain {symbol}: no 'expirationList' in the response")
    by_week: dict[tuple[int, int], dt.date] = {}
    for item in data["expirationList"]:
        raw = item.get("expirationDate") if isinstance(item, dict) else None
        try:
            day = dt.date.fromisoformat(str(raw)[:10])
        except ValueError:
            raise BadPayload(f"expirationchain {symbol}: bad expirationDate {raw!r}") from None
        if day > today and day.weekday() <= 4:
            week = day.isocalendar()[:2]
            by_week[week] = max(day, by_week.get(week, day))
    return sorted(by_week.values())


_PRICE_KEYS = {"bid": ("bid", "bidPrice"), "ask": ("ask", "askPrice"),
               "last": ("last", "lastPrice"), "mark": ("mark", "markPrice")}


def parse_chain(symbol: str, data: Any, expiration: dt.date, band_pct: float,
                 today: dt.date) -> pd.DataFrame:
    what = f"chains {symbol} {expiration}"
    if not isinstance(data, dict):
        raise BadPayload(f"{what}: expected a JSON object")
    if data.get("status") == "FAILED":
        raise BadPayload(f"{what}: Schwab answered status FAILED (no chain for that "
                         f"symbol/date)")
    underlying = data.get("underlying") if isinstance(data.get("underlying"), dict) else {}
    spot = data.get("underlyingPrice") or underlying.get("last") or underlying.get("mark")
    spot = number({"underlyingPrice": spot}, "underlyingPrice", what)
    rows: dict[str, list] = {name: [] for name in ("type", "strike", "bid", "ask", "last",
                                                   "mark", "volume", "open_interest", "delta",
                                                   "iv", "dte")}
    for kind, key in (("CALL", "callExpDateMap"), ("PUT", "putExpDateMap")):
        by_expiry = data.get(key) or {}
        if not isinstance(by_expiry, dict):
            raise BadPayload(f"{what}: '{key}' is not an object")
        for expiry_key, strikes in by_expiry.items():
            if str(expiry_key)[:10] != expiration.isoformat() or not isinstance(strikes, dict):
                continue
            for contracts in strikes.values():
                for contract in contracts if isinstance(contracts, list) else ():
                    _add_contract(rows, kind, contract, what, today, expiration)
    strikes = np.asarray(rows["strike"], dtype=float)
    keep = np.abs(strikes / spot - 1) <= band_pct / 100 if spot > 0 else strikes == strikes
    columns = {name: np.asarray(values)[keep] if values else values
               for name, values in rows.items()}
    n = int(keep.sum())
    columns.update(expiry=[expiration] * n, underlying_price=[spot] * n)
    return chain_frame(columns)


def _add_contract(rows, kind, contract, what, today, expiration):
    where = f"{what} contract {contract.get('symbol', '?') if isinstance(contract, dict) else '?'}"
    if not isinstance(contract, dict):
        raise BadPayload(f"{where}: not an object")
    rows["type"].append(str(contract.get("putCall") or kind).upper())
    rows["strike"].append(number(contract, "strikePrice", where))
    for name, keys in _PRICE_KEYS.items():
        key = next((k for k in keys if k in contract), keys[0])
        rows[name].append(number(contract, key, where))
    rows["volume"].append(int(number(contract, "totalVolume", where, default=0)))
    rows["open_interest"].append(int(number(contract, "openInterest", where, default=0)))
    rows["delta"].append(available(contract.get("delta")))
    rows["iv"].append(available(contract.get("volatility")))
    dte = contract.get("daysToExpiration")
    rows["dte"].append(int(dte) if isinstance(dte, (int, float)) and not isinstance(dte, bool)
                       else (expiration - today).days)


def available(value) -> float:
    """Schwab's -999 (and None/NaN/strings) mean 'not available': NaN."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return math.nan if value <= -999 or math.isnan(value) else float(value)
