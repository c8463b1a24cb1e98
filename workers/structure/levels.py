"""Key levels of option chains (GET /api/key_levels): per-strike volume, open interest and dealer gamma,
the walls, the old net-volume flip and the gamma flip. Frames in, frames out, no loop over chains.

`key_levels(prepared)` takes contracts from contracts.prepare() (any number of chains) and returns
`(levels, strikes)`: one row per (symbol, expiry) group and one per (symbol, expiry, strike). To
aggregate several expirations of a symbol, give them one `expiry` label (e.g. "all") and one
`underlying_price` first: every contract keeps its own gamma and open interest.

Per strike (STRIKE_FIELDS, the old service's rows): call_vol, put_vol, net_vol = put_vol - call_vol (the
old sign), call_oi, put_oi, call_gex, put_gex (<= 0), net_gex (sums of each contract's gex, see
contracts.py), call_premium and put_premium (volume x mark x 100 summed: the traded notional), and
distance_pct = |strike - spot| / spot x 100.

Per chain (LEVEL_FIELDS):
- call_wall, put_wall: the strike with the largest call (put) volume, as the old service defined
  them (the lowest such strike on a tie; None when no contract traded);
- call_oi_wall, put_oi_wall (new): the same by open interest, the positioning that lasts past the day;
- max_gex: the strike of the largest |net_gex|;
- flip_level: the old net-volume flip: among the strikes within 2 % of spot, in strike order, the
  first strike whose net_vol has the opposite strict sign of the next strike's; None if none;
- gamma_flip (new): the spot at which the total dealer GEX changes sign. Every contract's gamma is
  re-priced with Black-Scholes from its own iv and time at each of GRID spots from -10 % to +10 %
  around spot (0.25 % apart); the total GEX at spot S' is sum(sign x gamma(S') x OI x 100 x S'^2 x 0.01).
  Between two neighbouring grid spots of opposite sign the zero is interpolated linearly; of several,
  the one nearest spot is given; None when the total does not change sign on the grid;
- net_gex: the total at spot (with the providers' own gammas), pc_ratio = total put volume / total
  call volume (None when no call traded: the old 0 read as "very bullish"), total_call_vol,
  total_put_vol.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workers import options_math

from .contracts import GEX_UNIT, first_per_group, group_codes

STRIKE_FIELDS = ("strike", "call_vol", "put_vol", "net_vol", "call_oi", "put_oi", "call_gex", "put_gex", "net_gex",
                 "call_premium", "put_premium", "distance_pct")
LEVEL_FIELDS = ("symbol", "expiry", "underlying_price", "call_wall", "put_wall", "call_oi_wall", "put_oi_wall",
                "max_gex", "flip_level", "gamma_flip", "net_gex", "pc_ratio", "total_call_vol", "total_put_vol")
GRID = np.linspace(0.9, 1.1, 81)  # spots, relative to the chain's spot
FLIP_NEAR_PCT = 2.0
_CHUNK = 8192  # contracts re-priced at a time (a chunk x GRID matrix)


def strike_table(prepared: pd.DataFrame) -> pd.DataFrame:
    """One row per (symbol, expiry, strike), sorted, with STRIKE_FIELDS."""
    calls = prepared["is_call"].to_numpy()
    volume, oi, gex = (prepared[c].to_numpy() for c in ("volume", "open_interest", "gex"))
    premium = volume * np.nan_to_num(prepared["mark"].to_numpy()) * 100
    parts = pd.DataFrame({
        "symbol": prepared["symbol"].to_numpy(), "expiry": prepared["expiry"].to_numpy(),
        "strike": prepared["strike"].to_numpy(), "spot": prepared["underlying_price"].to_numpy(),
        "call_vol": np.where(calls, volume, 0.0), "put_vol": np.where(calls, 0.0, volume),
        "call_oi": np.where(calls, oi, 0.0), "put_oi": np.where(calls, 0.0, oi),
        "call_gex": np.where(calls, gex, 0.0), "put_gex": np.where(calls, 0.0, gex),
        "call_premium": np.where(calls, premium, 0.0), "put_premium": np.where(calls, 0.0, premium)})
    sums = parts.groupby(["symbol", "expiry", "strike"], sort=True).agg(
        spot=("spot", "first"), call_vol=("call_vol", "sum"), put_vol=("put_vol", "sum"),
        call_oi=("call_oi", "sum"), put_oi=("put_oi", "sum"), call_gex=("call_gex", "sum"),
        put_gex=("put_gex", "sum"), call_premium=("call_premium", "sum"), put_premium=("put_premium", "sum"))
    sums = sums.reset_index()
    sums["net_vol"] = sums["put_vol"] - sums["call_vol"]
    sums["net_gex"] = sums["call_gex"] + sums["put_gex"]
    sums["distance_pct"] = (sums["strike"] - sums["spot"]).abs() / sums["spot"] * 100
    return sums.loc[:, ["symbol", "expiry", "spot", *STRIKE_FIELDS]]


def _wall(strikes: pd.DataFrame, codes: np.ndarray, groups: int, column: str, absolute=False,
          require_positive=True) -> np.ndarray:
    """Per group, the strike of the largest `column` (the first, i.e. lowest, on a tie)."""
    values = strikes[column].to_numpy()
    values = np.abs(values) if absolute else values
    out = np.full(groups, np.nan)
    if not len(values):
        return out
    best = np.full(groups, -np.inf)
    np.maximum.at(best, codes, values)
    is_best = values == best[codes]
    first = first_per_group(codes[is_best], strikes["strike"].to_numpy()[is_best], groups)
    keep = best > 0 if require_positive else np.isfinite(best)
    out[keep] = first[keep]
    return out


def _volume_flip(strikes: pd.DataFrame, codes: np.ndarray, groups: int) -> np.ndarray:
    near = strikes["distance_pct"].to_numpy() < FLIP_NEAR_PCT
    net, code, strike = strikes["net_vol"].to_numpy()[near], codes[near], strikes["strike"].to_numpy()[near]
    flips = (code[:-1] == code[1:]) & (net[:-1] * net[1:] < 0)
    return first_per_group(code[:-1][flips], strike[:-1][flips], groups)


def total_gex_on_grid(prepared: pd.DataFrame, codes: np.ndarray, spots: np.ndarray) -> np.ndarray:
    """Total dealer GEX of each group at each of its grid spots (groups x GRID), gamma re-priced.

    At spot S' = s x g, gamma x S'^2 = S' phi(d1) / (sigma sqrt T) with d1 = (a + ln g) / (sigma sqrt T),
    a = ln(s / K) + (r + sigma^2 / 2) T: the per-contract parts are computed once, the grid only adds ln g."""
    out = np.zeros((len(spots), GRID.size))
    sigma = prepared["iv"].to_numpy() / 100
    years = prepared["years"].to_numpy()
    usable = np.flatnonzero(np.isfinite(sigma) & (sigma > 0) & (prepared["open_interest"].to_numpy() > 0)
                            & (years > 0) & (prepared["strike"].to_numpy() > 0))
    usable = usable[np.argsort(codes[usable], kind="stable")]
    sign = np.where(prepared["is_call"].to_numpy(), 1.0, -1.0)
    spot = spots[codes]
    root = sigma * np.sqrt(np.where(years > 0, years, 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        shift = np.log(spot / prepared["strike"].to_numpy()) + (options_math.RISK_FREE_RATE + sigma * sigma / 2) * years
        weight = sign * prepared["open_interest"].to_numpy() * GEX_UNIT * spot / (root * np.sqrt(2 * np.pi))
    log_grid, grid = np.log(GRID), GRID
    for start in range(0, usable.size, _CHUNK):
        rows = usable[start:start + _CHUNK]
        d1 = (shift[rows][:, None] + log_grid) / root[rows][:, None]
        exposure = weight[rows][:, None] * grid * np.exp(-0.5 * d1 * d1)
        group = codes[rows]
        firsts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        out[group[firsts]] += np.add.reduceat(exposure, firsts, axis=0)
    return out


def gamma_flips(totals: np.ndarray, spots: np.ndarray) -> np.ndarray:
    """The zero of each row of `totals` (over GRID x spot) nearest spot, interpolated; NaN if none."""
    at = spots[:, None] * GRID[None, :]
    left, right = totals[:, :-1], totals[:, 1:]
    crossing = left * right < 0
    with np.errstate(divide="ignore", invalid="ignore"):
        zero = at[:, :-1] + (at[:, 1:] - at[:, :-1]) * left / (left - right)
    distance = np.where(crossing, np.abs(zero - spots[:, None]), np.inf)
    nearest = distance.argmin(axis=1)
    found = np.isfinite(distance[np.arange(len(spots)), nearest])
    return np.where(found, zero[np.arange(len(spots)), nearest], np.nan)


def key_levels(prepared: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(levels: LEVEL_FIELDS per (symbol, expiry); strikes: symbol, expiry, spot, STRIKE_FIELDS)."""
    strikes = strike_table(prepared)
    codes, keys = group_codes(prepared, ("symbol", "expiry"))
    groups = len(keys)
    strike_codes, _ = group_codes(strikes, ("symbol", "expiry"))  # the same groups, in the same sorted order
    spots = first_per_group(codes, prepared["underlying_price"].to_numpy(), groups)
    call_vol = np.bincount(strike_codes, strikes["call_vol"].to_numpy(), groups)
    put_vol = np.bincount(strike_codes, strikes["put_vol"].to_numpy(), groups)
    with np.errstate(divide="ignore", invalid="ignore"):
        pc_ratio = np.where(call_vol > 0, put_vol / call_vol, np.nan)
    levels = pd.DataFrame({
        "symbol": keys["symbol"].to_numpy(dtype=object), "expiry": keys["expiry"].to_numpy(dtype=object),
        "underlying_price": spots,
        "call_wall": _wall(strikes, strike_codes, groups, "call_vol"),
        "put_wall": _wall(strikes, strike_codes, groups, "put_vol"),
        "call_oi_wall": _wall(strikes, strike_codes, groups, "call_oi"),
        "put_oi_wall": _wall(strikes, strike_codes, groups, "put_oi"),
        "max_gex": _wall(strikes, strike_codes, groups, "net_gex", absolute=True, require_positive=False),
        "flip_level": _volume_flip(strikes, strike_codes, groups),
        "gamma_flip": gamma_flips(total_gex_on_grid(prepared, codes, spots), spots),
        "net_gex": np.bincount(strike_codes, strikes["net_gex"].to_numpy(), groups),
        "pc_ratio": pc_ratio, "total_call_vol": call_vol, "total_put_vol": put_vol})
    return levels, strikes
