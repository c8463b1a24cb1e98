"""The market-structure answers' bodies: key levels from contracts, and the old market snapshot's shapes.

`key_levels_answer` computes a chain's levels (workers/structure/levels.py) into the old
/api/key_levels body: `call_wall`, `put_wall` and `max_gex` are that strike's whole row, as the old
service sent them (so are the new `call_oi_wall` and `put_oi_wall`), with `strike_data` every row.

The old /api/market_snapshot passed Schwab's own JSON through; `quote_document`, `chain_document` and
`candles_document` write the provider's frames in those shapes (the fields the old dashboard reads:
quote.lastPrice ..., callExpDateMap/putExpDateMap of contracts with putCall, strikePrice, bid, ask,
last, mark, totalVolume, openInterest, volatility, delta, gamma, theta, vega, daysToExpiration;
candles of datetime in epoch milliseconds, open, high, low, close, volume), whatever the provider.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Optional

import numpy as np
import pandas as pd

from workers.structure import ALL_EXPIRATIONS, STRIKE_FIELDS, key_levels, plain_rows, prepare, with_all_expirations

INTRADAY_MINUTES = 5
INTRADAY_SESSIONS = 2
DAILY_BARS = 30
NEW_YORK = "America/New_York"


def _number(value) -> Optional[float]:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def key_levels_answer(contracts: pd.DataFrame, symbol: str, expiry: str, source: str) -> dict:
    """The old body (plus expiry, the OI walls, gamma_flip, net_gex, source) of one chain's contracts,
    or of every stored expiration of `symbol` with expiry "all"."""
    prepared = prepare(contracts)
    if expiry == ALL_EXPIRATIONS:
        prepared = with_all_expirations(prepared)
    levels, strikes = key_levels(prepared)
    row = levels.iloc[0]
    rows = plain_rows(strikes, STRIKE_FIELDS)
    by_strike = {r["strike"]: r for r in rows}

    def strike_row(strike):
        return by_strike.get(float(strike)) if _number(strike) is not None else None

    return {"success": True, "symbol": symbol, "expiry": expiry, "underlying_price": _number(row.underlying_price),
            "call_wall": strike_row(row.call_wall), "put_wall": strike_row(row.put_wall),
            "call_oi_wall": strike_row(row.call_oi_wall), "put_oi_wall": strike_row(row.put_oi_wall),
            "max_gex": strike_row(row.max_gex), "flip_level": _number(row.flip_level),
            "gamma_flip": _number(row.gamma_flip), "net_gex": _number(row.net_gex), "pc_ratio": _number(row.pc_ratio),
            "total_call_vol": _number(row.total_call_vol), "total_put_vol": _number(row.total_put_vol),
            "strike_data": rows, "fetched_at": str(contracts["fetched_at"].min()), "source": source,
            "expirations": sorted({str(e)[:10] for e in contracts["expiry"]})}


def quote_document(symbol: str, quote: pd.Series) -> dict:
    price, change = _number(quote["price"]), _number(quote["daily_change"])
    return {symbol: {"symbol": symbol, "quote": {
        "lastPrice": price, "closePrice": None if price is None or change is None else round(price - change, 4),
        "netChange": change, "netPercentChange": _number(quote["daily_change_pct"]),
        "totalVolume": int(quote["volume"]), "openPrice": _number(quote["open"]), "highPrice": _number(quote["high"]),
        "lowPrice": _number(quote["low"])}}}


def chain_document(symbol: str, chain: pd.DataFrame) -> dict:
    maps: dict[str, dict] = {"CALL": {}, "PUT": {}}
    for c in chain.itertuples(index=False):
        expiry = pd.Timestamp(c.expiry).date()
        contract = {"putCall": c.type, "symbol": f"{symbol:<6}{expiry:%y%m%d}{c.type[0]}{int(round(c.strike * 1000)):08d}",
                    "strikePrice": _number(c.strike), "bid": _number(c.bid), "ask": _number(c.ask),
                    "last": _number(c.last), "mark": _number(c.mark), "totalVolume": int(c.volume),
                    "openInterest": int(c.open_interest), "volatility": _number(c.iv), "delta": _number(c.delta),
                    "gamma": _number(c.gamma), "theta": _number(c.theta), "vega": _number(c.vega),
                    "daysToExpiration": int(c.dte), "expirationDate": expiry.isoformat(), "multiplier": 100.0}
        maps[c.type].setdefault(f"{expiry.isoformat()}:{int(c.dte)}", {}).setdefault(
            str(float(c.strike)), []).append(contract)
    spot = _number(chain["underlying_price"].iloc[0]) if len(chain) else None
    return {"symbol": symbol, "status": "SUCCESS" if len(chain) else "FAILED", "underlyingPrice": spot,
            "numberOfContracts": len(chain), "callExpDateMap": maps["CALL"], "putExpDateMap": maps["PUT"]}


def candles_document(symbol: str, bars: pd.DataFrame, timeframe: str) -> dict:
    """The old price history: 5-minute bars of the last two sessions' regular hours, or the last 30 daily bars."""
    if timeframe == "intraday":
        local = pd.DatetimeIndex(bars.index).tz_convert(NEW_YORK)
        minutes = np.asarray(local.hour * 60 + local.minute)
        days = np.asarray(local.date)
        regular = (minutes >= 9 * 60 + 30) & (minutes < 16 * 60)
        last_sessions = sorted(set(days[regular]))[-INTRADAY_SESSIONS:]
        bars = bars[regular & np.isin(days, last_sessions)]
        stamps = [int(ts.timestamp() * 1000) for ts in bars.index]
    else:
        bars = bars.iloc[-DAILY_BARS:]
        stamps = [int(pd.Timestamp(d).tz_localize(NEW_YORK).timestamp() * 1000) for d in bars.index]
    candles = [{"datetime": t, "open": _number(o), "high": _number(h), "low": _number(l_), "close": _number(c),
                "volume": int(v)} for t, (o, h, l_, c, v) in zip(stamps, bars.loc[:, ["open", "high", "low", "close",
                                                                                     "volume"]].itertuples(
                    index=False, name=None))]
    return {"symbol": symbol, "empty": not candles, "candles": candles}


def snapshot_body(symbol: str, expiry: dt.date, timeframe: str, quote: pd.Series, chain: pd.DataFrame,
                  bars: pd.DataFrame, now: dt.datetime) -> dict[str, Any]:
    return {"success": True, "symbol": symbol, "expiry": expiry.isoformat(), "underlying_price": _number(quote["price"]),
            "quote": quote_document(symbol, quote), "options_chain": chain_document(symbol, chain),
            "price_history": candles_document(symbol, bars, timeframe), "timeframe": timeframe,
            "fetched_at": now.isoformat()}
