"""Skew and open-interest flows per chain: ATM IV, 25-delta skew, put/call volume, unusual contracts.

`skew_metrics(prepared)` (contracts from contracts.prepare(), any number of chains) gives one row
per (symbol, expiry), SKEW_FIELDS; `oi_flows(prepared)` the unusual contracts themselves. Volatilities
are in percent (points), as chains carry them.

- atm_strike: the strike nearest spot (the lower on a tie); implied_move: the straddle there, call
  mark + put mark (USD), and implied_move_pct of spot.
- atm_iv: the implied volatility at spot, interpolated linearly in strike between the two strikes
  around spot, each strike's IV being the mean of its call's and put's (whichever exist); at the
  nearest strike's when spot is outside the strikes.
- call_25d_iv, put_25d_iv: the IV at delta +0.25 (calls) and -0.25 (puts), interpolated linearly in
  delta between the two contracts around it; None when no two contracts bracket it (never
  extrapolated). skew_25d = put_25d_iv - call_25d_iv: positive when puts are dearer (fear).
  (The old service took the first contract it met with a delta in 0.20..0.30, and reported 0 when
  it found none, which averaged as "no skew".)
- put_call_ratio: put volume / call volume (None when no call traded); the totals of volume and
  open interest per side.
- unusual_contracts: the contracts with volume / open interest >= UNUSUAL_VOL_OI (3, the old
  service's OI-flow threshold; open interest 0 counts as 1); max_vol_oi the largest ratio in the
  chain (0 when it has none that high, as the old top-opportunities query read it).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .contracts import first_per_group, group_codes

SKEW_FIELDS = ("symbol", "expiry", "dte", "underlying_price", "atm_strike", "atm_iv", "call_25d_iv", "put_25d_iv",
               "skew_25d", "put_call_ratio", "total_call_volume", "total_put_volume", "total_call_oi", "total_put_oi",
               "unusual_contracts", "max_vol_oi", "implied_move", "implied_move_pct")
OI_FLOW_FIELDS = ("symbol", "expiry", "type", "strike", "volume", "open_interest", "vol_oi_ratio", "mark", "notional",
                  "delta", "iv", "underlying_price")
UNUSUAL_VOL_OI = 3.0
TARGET_DELTA = 0.25


def interpolate_at(codes: np.ndarray, x: np.ndarray, y: np.ndarray, targets: np.ndarray, groups: int,
                   clamp: bool) -> np.ndarray:
    """Per group g, y interpolated linearly in x at targets[g] among the group's (x, y) points.

    Points need not be sorted. Outside a group's x range: the nearest point's y if `clamp`, else NaN.
    Done on one sorted composite key (group, x), without a loop over groups."""
    out = np.full(groups, np.nan)
    ok = np.isfinite(x) & np.isfinite(y)
    codes, x, y = codes[ok], x[ok], y[ok]
    if not codes.size:
        return out
    span = float(np.nanmax(np.abs(np.r_[x, targets[np.isfinite(targets)]]))) * 2 + 1
    order = np.lexsort((x, codes))
    codes, x, y = codes[order], x[order], y[order]
    keys = codes * span + x
    present = np.unique(codes)
    want = targets[present]
    spot = np.searchsorted(keys, present * span + want, side="left")
    hi = np.minimum(spot, len(keys) - 1)
    lo = np.maximum(spot - 1, 0)
    hi_in, lo_in = codes[hi] == present, codes[lo] == present
    exact = hi_in & (x[hi] == want)
    both = hi_in & lo_in & (spot > 0) & (spot < len(keys)) & ~exact
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(x[hi] != x[lo], (want - x[lo]) / (x[hi] - x[lo]), 0.0)
    value = np.where(exact, y[hi], np.where(both, y[lo] + (y[hi] - y[lo]) * weight, np.nan))
    if clamp:
        below = hi_in & ~lo_in | (spot == 0) & hi_in  # every point of the group is above the target
        above = ~hi_in & lo_in | (spot >= len(keys)) & lo_in  # every point is below it
        value = np.where(np.isnan(value) & below, y[hi], value)
        value = np.where(np.isnan(value) & above, y[lo], value)
    out[present] = value
    return out


def skew_metrics(prepared: pd.DataFrame) -> pd.DataFrame:
    codes, keys = group_codes(prepared, ("symbol", "expiry"))
    groups = len(keys)
    calls = prepared["is_call"].to_numpy()
    strike, iv, delta = (prepared[c].to_numpy() for c in ("strike", "iv", "delta"))
    volume, oi, mark = (prepared[c].to_numpy() for c in ("volume", "open_interest", "mark"))
    spots = first_per_group(codes, prepared["underlying_price"].to_numpy(), groups)
    dte = first_per_group(codes, prepared["dte"].to_numpy(dtype=float), groups) if "dte" in prepared else \
        np.full(groups, np.nan)

    # the strike nearest spot (lower on a tie): the smallest (distance, strike) per group
    distance = np.abs(strike - spots[codes])
    order = np.lexsort((strike, distance, codes))
    atm_strike = first_per_group(codes[order], strike[order], groups)
    at_atm = strike == atm_strike[codes]
    straddle = np.bincount(codes[at_atm], np.nan_to_num(mark[at_atm]), groups)
    has_both = (np.bincount(codes[at_atm & calls], minlength=groups) > 0) & \
        (np.bincount(codes[at_atm & ~calls], minlength=groups) > 0)
    straddle = np.where(has_both, straddle, np.nan)

    per_strike = pd.DataFrame({"code": codes, "strike": strike, "iv": iv}).groupby(["code", "strike"])["iv"].mean()
    strike_codes = per_strike.index.get_level_values("code").to_numpy(dtype=np.intp)
    atm_iv = interpolate_at(strike_codes, per_strike.index.get_level_values("strike").to_numpy(dtype=float),
                            per_strike.to_numpy(), spots, groups, clamp=True)
    call_iv = interpolate_at(codes[calls], delta[calls], iv[calls], np.full(groups, TARGET_DELTA), groups,
                             clamp=False)
    put_iv = interpolate_at(codes[~calls], delta[~calls], iv[~calls], np.full(groups, -TARGET_DELTA), groups,
                            clamp=False)

    call_volume = np.bincount(codes[calls], volume[calls], groups)
    put_volume = np.bincount(codes[~calls], volume[~calls], groups)
    ratio = volume / np.maximum(oi, 1.0)
    unusual = ratio >= UNUSUAL_VOL_OI
    max_ratio = np.zeros(groups)
    np.maximum.at(max_ratio, codes[unusual], ratio[unusual])
    with np.errstate(divide="ignore", invalid="ignore"):
        pc = np.where(call_volume > 0, put_volume / call_volume, np.nan)
    return pd.DataFrame({
        "symbol": keys["symbol"].to_numpy(dtype=object), "expiry": keys["expiry"].to_numpy(dtype=object),
        "dte": dte, "underlying_price": spots, "atm_strike": atm_strike, "atm_iv": atm_iv,
        "call_25d_iv": call_iv, "put_25d_iv": put_iv, "skew_25d": put_iv - call_iv, "put_call_ratio": pc,
        "total_call_volume": call_volume, "total_put_volume": put_volume,
        "total_call_oi": np.bincount(codes[calls], oi[calls], groups),
        "total_put_oi": np.bincount(codes[~calls], oi[~calls], groups),
        "unusual_contracts": np.bincount(codes[unusual], minlength=groups), "max_vol_oi": max_ratio,
        "implied_move": straddle, "implied_move_pct": straddle / spots * 100}, columns=list(SKEW_FIELDS))


def oi_flows(prepared: pd.DataFrame) -> pd.DataFrame:
    """The contracts with volume / open interest >= UNUSUAL_VOL_OI, largest ratio first; OI_FLOW_FIELDS."""
    ratio = prepared["volume"].to_numpy() / np.maximum(prepared["open_interest"].to_numpy(), 1.0)
    hit = ratio >= UNUSUAL_VOL_OI
    flows = prepared.loc[hit].copy()
    flows["vol_oi_ratio"] = ratio[hit]
    flows["notional"] = flows["volume"] * flows["mark"].fillna(0.0) * 100
    flows["type"] = np.where(flows["is_call"], "CALL", "PUT")
    flows = flows.sort_values(["vol_oi_ratio", "symbol", "expiry", "strike"], ascending=[False, True, True, True])
    return flows.loc[:, list(OI_FLOW_FIELDS)].reset_index(drop=True)
