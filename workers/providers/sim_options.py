"""The simulated market's option chains: Black-Scholes on a skewed smile, with sizes like a real market's.

Every number of a contract is consistent with Black-Scholes (workers/options_math.py) from the
contract's own reported `iv` (rounded to 0.01 %), the chain's `underlying_price` (rounded to the cent)
and the time to 16:00 New York on the expiration: its value (around which bid, ask and mark are
quoted), delta, gamma, theta and vega.

- Implied volatility: a per-symbol at-the-money level (index ETFs 14-22 %, other symbols 30-60 %) that
  drifts from day to day (+-12 %, so a daily IV history has a range) and a little within the day, on
  a smile in standardised moneyness x = ln(K/S) / (atm sqrt T):
      iv = atm x clip(1 - slope x + curvature x^2, 0.6, 3.5)
  `slope` > 0 is the equity skew (puts dearer than calls): 0.22-0.38 for the index ETFs, -0.02-0.05
  for single names (a few have call skew), swinging +-35 % over a few hours of the session. A
  25-delta put then trades about 3-8 volatility points over the 25-delta call on SPY, -1-4 on a stock.
- Open interest is fixed for the day: puts gather below the previous close and calls above it
  (puts' centre 2.5 % below, calls' 1.5 % above), with a put/call ratio drawn per day (index ETFs
  0.7-1.3, single names 0.5-1.0) and more open interest on later expirations; 200-8,000 contracts at the
  money, by the symbol's share volume (8,000 for the index ETFs). So the dealer gamma changes sign near spot: a gamma flip.
- Volume is cumulative over the session and never decreases: each contract trades a share of its
  open interest (most near the money), at a pace that swings between calls and puts over the day
  around a put/call volume ratio drawn per day (index ETFs 0.45-1.3, single names 0.4-1.0), so the
  ratio moves and the sentiment with it.
- Now and then (30 % of the hours, per symbol and expiration) one near-the-money contract gets a
  whale trade: a traded notional drawn between $150k and $8M (log-uniform), into a strike whose open
  interest is 3-12 times smaller than the trade, of 500 to 20,000 contracts. No contract trades more
  than about $25M a day.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

from .. import options_math

INDEX_ETFS = {"SPY": 0.15, "QQQ": 0.20, "IWM": 0.22, "DIA": 0.14}  # their at-the-money IV level
SESSION_MINUTES = 390
WHALE_NOTIONAL = (150_000.0, 8_000_000.0)
_FLOW_PERIOD_MIN = 390.0  # the calls/puts pace swings once a session
_FLOW_SWING = 0.9
MAX_WHALE_CONTRACTS = 20_000


def style(symbol: str, rng: np.random.Generator, sigma: float, share_volume: float) -> dict:
    """A symbol's option market, fixed for ever (seeded by the symbol)."""
    index = symbol in INDEX_ETFS
    return {"atm": INDEX_ETFS.get(symbol, sigma * 100), "index": index,
            "slope": rng.uniform(0.22, 0.38) if index else rng.uniform(-0.02, 0.05),
            "curvature": rng.uniform(0.02, 0.05),
            "oi_atm": 8000.0 if index else float(np.clip(share_volume / 4000, 200, 8000)),
            "phases": rng.uniform(0, 2 * np.pi, 5)}


def _paced(minute: float, phase: float) -> float:
    """The share of a session's volume traded by `minute` at a pace 1 + swing sin(w u + phase): never falls."""
    omega = 2 * np.pi / _FLOW_PERIOD_MIN
    done = minute + _FLOW_SWING / omega * (np.cos(phase) - np.cos(omega * minute + phase))
    return 0.1 + done / SESSION_MINUTES


def chain_columns(s: dict, *, spot: float, reference: float, strikes: np.ndarray, keep: np.ndarray,
                  expiration: dt.date, now: dt.datetime, day: int, minute: int,
                  day_rng: np.random.Generator, whale_rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The contracts of one expiration (calls then puts, strikes where `keep`), as chain_frame columns."""
    ph = s["phases"]
    clock = day * SESSION_MINUTES + minute
    atm = s["atm"] * (1 + 0.12 * np.sin(2 * np.pi * day / 23 + ph[0])) * (1 + 0.03 * np.sin(2 * np.pi * clock / 97))
    slope = s["slope"] * (1 + 0.35 * np.sin(2 * np.pi * clock / 250 + ph[1]))
    years = options_math.years_to_expiry(now, expiration)
    spot = round(spot, 2)
    strikes = strikes[keep]
    x = np.log(strikes / spot) / (atm * np.sqrt(years))
    iv_pct = np.round(100 * atm * np.clip(1 - slope * x + s["curvature"] * x * x, 0.6, 3.5), 2)

    dte = (expiration - now.date()).days
    m = np.log(strikes / reference)
    term = min(2.0, 0.6 + dte / 14)
    pcr = (day_rng.uniform(0.7, 1.3) if s["index"] else day_rng.uniform(0.5, 1.0))
    pcr_volume = (day_rng.uniform(0.45, 1.3) if s["index"] else day_rng.uniform(0.4, 1.0)) / pcr
    base = day_rng.uniform(0.5, 1.5, (2, keep.size))[:, keep]
    activity = day_rng.uniform(0.05, 0.4, (2, keep.size))[:, keep] * np.exp(-(m / 0.05) ** 2) + 0.005
    oi = {"CALL": s["oi_atm"] * term * base[0] * np.exp(-((m - 0.015) / 0.06) ** 2),
          "PUT": s["oi_atm"] * term * pcr * base[1] * np.exp(-((m + 0.025) / 0.07) ** 2)}
    pace = {"CALL": _paced(minute, ph[2] + np.pi), "PUT": _paced(minute, ph[2]) * pcr_volume}

    parts = []
    for side, kind in enumerate(("CALL", "PUT")):
        g = options_math.greeks(kind == "CALL", spot, strikes, iv_pct / 100, years)
        open_interest = np.round(oi[kind]).astype(np.int64) + 10
        mid = np.maximum(g["price"], 0.01)
        spread = np.maximum(0.01, 0.04 * mid + 0.01)
        bid = np.maximum(np.round(mid - spread / 2, 2), 0.0)
        ask = np.round(bid + spread, 2) + 0.01 * (bid == 0)
        parts.append({"type": np.full(strikes.size, kind, dtype=object), "strike": strikes, "bid": bid, "ask": ask,
                      "last": np.round(mid, 2), "mark": np.round((bid + ask) / 2, 3),
                      "volume": np.round(open_interest * activity[side] * pace[kind]).astype(np.int64),
                      "open_interest": open_interest, "iv": iv_pct, "delta": g["delta"], "gamma": g["gamma"],
                      "theta": g["theta"], "vega": g["vega"]})
    columns = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    _whale(columns, spot, whale_rng)
    rows = columns["strike"].size
    columns.update(expiry=np.full(rows, expiration, dtype=object), dte=np.full(rows, dte),
                   underlying_price=np.full(rows, spot))
    return columns


def _whale(columns: dict, spot: float, rng: np.random.Generator) -> None:
    """Now and then one near-the-money contract trades big, into a strike of small open interest."""
    near = np.flatnonzero((np.abs(columns["strike"] / spot - 1) <= 0.03) & (np.abs(columns["delta"]) > 0.05)
                          & (columns["mark"] >= 0.3))
    if rng.random() > 0.3 or near.size == 0:
        return
    row = near[rng.integers(near.size)]
    notional = float(np.exp(rng.uniform(*np.log(WHALE_NOTIONAL))))
    volume = int(np.clip(np.ceil(notional / (columns["mark"][row] * 100)), 500, MAX_WHALE_CONTRACTS))
    columns["volume"][row] = volume
    columns["open_interest"][row] = max(1, min(int(columns["open_interest"][row]), int(volume / rng.uniform(3, 12))))
