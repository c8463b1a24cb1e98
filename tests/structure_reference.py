"""Straightforward per-contract implementations of the market-structure computations, for the tests
and the benchmark's baseline: plain Python loops over contract dicts, math instead of NumPy, written
from the definitions in workers/structure/ without sharing its code."""
from __future__ import annotations

import math

from workers.options_math import RISK_FREE_RATE

GRID = [0.9 + 0.0025 * i for i in range(81)]


def _gamma(spot, strike, sigma, years, rate=RISK_FREE_RATE):
    d1 = (math.log(spot / strike) + (rate + sigma * sigma / 2) * years) / (sigma * math.sqrt(years))
    return math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi) / (spot * sigma * math.sqrt(years))


def contract_gamma(c):
    """The provider's gamma, else Black-Scholes from iv; None without either."""
    given = c.get("gamma")
    if given is not None and given == given:
        return given
    iv = c.get("iv")
    if iv is None or iv != iv or iv <= 0:
        return None
    return _gamma(c["underlying_price"], c["strike"], iv / 100, c["years"])


def chain_levels(contracts):
    """One chain's key levels: (levels dict, {strike: row}) by loops."""
    spot = contracts[0]["underlying_price"]
    rows = {}
    for c in contracts:
        row = rows.setdefault(c["strike"], dict(call_vol=0.0, put_vol=0.0, call_oi=0.0, put_oi=0.0, call_gex=0.0,
                                                put_gex=0.0, call_premium=0.0, put_premium=0.0))
        side = "call" if c["type"] == "CALL" else "put"
        gamma = contract_gamma(c) or 0.0
        gex = gamma * c["open_interest"] * 100 * spot * spot * 0.01
        row[f"{side}_vol"] += c["volume"]
        row[f"{side}_oi"] += c["open_interest"]
        row[f"{side}_gex"] += gex if side == "call" else -gex
        row[f"{side}_premium"] += c["volume"] * (c["mark"] if c["mark"] == c["mark"] else 0.0) * 100
    for strike, row in rows.items():
        row["net_vol"] = row["put_vol"] - row["call_vol"]
        row["net_gex"] = row["call_gex"] + row["put_gex"]
        row["distance_pct"] = abs(strike - spot) / spot * 100
    strikes = sorted(rows)

    def wall(field, absolute=False, positive=True):
        best, at = None, None
        for k in strikes:
            value = abs(rows[k][field]) if absolute else rows[k][field]
            if best is None or value > best:
                best, at = value, k
        return at if best is not None and (best > 0 or not positive) else None

    near = [k for k in strikes if rows[k]["distance_pct"] < 2.0]
    flip = None
    for a, b in zip(near, near[1:]):
        if rows[a]["net_vol"] * rows[b]["net_vol"] < 0:
            flip = a
            break
    calls = sum(rows[k]["call_vol"] for k in strikes)
    puts = sum(rows[k]["put_vol"] for k in strikes)
    levels = {"underlying_price": spot, "call_wall": wall("call_vol"), "put_wall": wall("put_vol"),
              "call_oi_wall": wall("call_oi"), "put_oi_wall": wall("put_oi"),
              "max_gex": wall("net_gex", absolute=True, positive=False), "flip_level": flip,
              "gamma_flip": gamma_flip(contracts, spot), "net_gex": sum(rows[k]["net_gex"] for k in strikes),
              "pc_ratio": puts / calls if calls > 0 else None, "total_call_vol": calls, "total_put_vol": puts}
    return levels, rows


def gamma_flip(contracts, spot):
    """Re-price every contract's gamma at every grid spot, one at a time; the zero nearest spot."""
    totals = []
    for r in GRID:
        at = spot * r
        total = 0.0
        for c in contracts:
            iv = c.get("iv")
            if iv is None or iv != iv or iv <= 0 or c["open_interest"] <= 0:
                continue
            gex = _gamma(at, c["strike"], iv / 100, c["years"]) * c["open_interest"] * 100 * at * at * 0.01
            total += gex if c["type"] == "CALL" else -gex
        totals.append((at, total))
    best = None
    for (x0, y0), (x1, y1) in zip(totals, totals[1:]):
        if y0 * y1 < 0:
            zero = x0 + (x1 - x0) * y0 / (y0 - y1)
            if best is None or abs(zero - spot) < abs(best - spot):
                best = zero
    return best


def _interpolate(points, target):
    """y at target from (x, y) points, linear between the two around it; None outside."""
    points = sorted(p for p in points if p[0] == p[0] and p[1] == p[1])
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= target <= x1:
            if x0 == target:
                return y0
            if x1 == target:
                return y1
            return y0 + (y1 - y0) * (target - x0) / (x1 - x0)
    if len(points) == 1 and points[0][0] == target:
        return points[0][1]
    return None


def chain_skew(contracts):
    spot = contracts[0]["underlying_price"]
    strikes = sorted({c["strike"] for c in contracts})
    atm = min(strikes, key=lambda k: (abs(k - spot), k))
    per_strike = []
    for k in strikes:
        ivs = [c["iv"] for c in contracts if c["strike"] == k and c["iv"] == c["iv"]]
        if ivs:
            per_strike.append((k, sum(ivs) / len(ivs)))
    atm_iv = _interpolate(per_strike, spot)
    if atm_iv is None and per_strike:
        atm_iv = per_strike[0][1] if spot < per_strike[0][0] else per_strike[-1][1]
    call = _interpolate([(c["delta"], c["iv"]) for c in contracts if c["type"] == "CALL"], 0.25)
    put = _interpolate([(c["delta"], c["iv"]) for c in contracts if c["type"] == "PUT"], -0.25)
    calls = sum(c["volume"] for c in contracts if c["type"] == "CALL")
    puts = sum(c["volume"] for c in contracts if c["type"] == "PUT")
    ratios = [c["volume"] / max(c["open_interest"], 1) for c in contracts]
    unusual = [r for r in ratios if r >= 3]
    at_atm = [c for c in contracts if c["strike"] == atm]
    straddle = (sum(c["mark"] for c in at_atm) if {c["type"] for c in at_atm} == {"CALL", "PUT"} else None)
    return {"atm_strike": atm, "atm_iv": atm_iv, "call_25d_iv": call, "put_25d_iv": put,
            "skew_25d": None if call is None or put is None else put - call,
            "put_call_ratio": puts / calls if calls > 0 else None, "total_call_volume": calls,
            "total_put_volume": puts, "unusual_contracts": len(unusual), "max_vol_oi": max(unusual, default=0.0),
            "implied_move": straddle}


def by_chain(contracts):
    chains = {}
    for c in contracts:
        chains.setdefault((c["symbol"], str(c["expiry"])[:10]), []).append(c)
    return chains
