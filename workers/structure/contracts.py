"""The contracts every market-structure computation reads, and how they are grouped.

Input: a long frame of option contracts from any number of chains, one row per contract, with the
columns of workers/providers/base.py CHAIN_COLUMNS plus `symbol` (the store's option_chains rows
and `fetched_at` do). `prepare()` adds what the computations share:

- `is_call`; `years`: time to 16:00 New York on the expiry from `fetched_at` (options_math);
- `gamma`: the provider's where it sent one (Schwab), else Black-Scholes from the contract's own iv
  (NaN when it has none: such a contract adds no gamma anywhere);
- `gex`: the contract's dealer gamma exposure in dollars per 1 % move of the underlying,
      gamma x open_interest x 100 x S^2 x 0.01,  calls positive, puts negative,
  computed per contract, with its own gamma and open interest (the old service summed gammas per
  strike across expirations and multiplied them by the summed open interest: it is never done here).

`group_codes(frame, by)` numbers the groups (a chain is (symbol, expiry)) in sorted order without a
loop over them; the computations work on those codes with NumPy.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from workers import options_math

GEX_UNIT = 100 * 0.01  # contract multiplier x a 1 % move
NEEDED = ("symbol", "expiry", "type", "strike", "volume", "open_interest", "mark", "iv", "delta",
          "underlying_price")


def prepare(contracts: pd.DataFrame, now=None) -> pd.DataFrame:
    """A copy of `contracts` with is_call, years, gamma (filled from Black-Scholes) and gex.

    `now` (aware) stands for every contract's fetch time when there is no `fetched_at` column."""
    missing = [c for c in NEEDED if c not in contracts.columns]
    if missing:
        raise ValueError(f"contracts lack column(s) {', '.join(missing)}")
    out = contracts.reset_index(drop=True).copy()
    out["expiry"] = out["expiry"].astype(str).str.slice(0, 10).to_numpy(dtype=object)
    out["is_call"] = (out["type"].astype(str) == "CALL").to_numpy()
    for name in ("strike", "volume", "open_interest", "mark", "iv", "delta", "underlying_price"):
        out[name] = out[name].astype("float64")
    out["years"] = _years(out, now)
    given = out["gamma"].astype("float64").to_numpy() if "gamma" in out.columns else np.full(len(out), np.nan)
    computed = options_math.gamma(out["underlying_price"].to_numpy(), out["strike"].to_numpy(),
                                  out["iv"].to_numpy() / 100, out["years"].to_numpy())
    out["gamma"] = np.where(np.isfinite(given), given, computed)
    spot = out["underlying_price"].to_numpy()
    sign = np.where(out["is_call"].to_numpy(), 1.0, -1.0)
    out["gex"] = sign * np.nan_to_num(out["gamma"].to_numpy()) * out["open_interest"].to_numpy() * GEX_UNIT \
        * spot * spot
    return out


def _years(frame: pd.DataFrame, now) -> np.ndarray:
    """Years to expiry per contract, computed once per (fetch time, expiry) pair."""
    stamps = frame["fetched_at"] if "fetched_at" in frame.columns else pd.Series([now] * len(frame))
    if len(frame) and stamps.isna().any():
        raise ValueError("contracts without a fetch time: give `fetched_at` or `now`")
    pairs = pd.DataFrame({"at": pd.Series(stamps).astype(str).to_numpy(dtype=object),
                          "expiry": frame["expiry"].to_numpy()})
    codes, keys = group_codes(pairs, ("at", "expiry"))
    years = np.array([options_math.years_to_expiry(_aware(at), expiry) for at, expiry in
                      zip(keys["at"], keys["expiry"])], dtype=float)
    return years[codes] if len(frame) else np.zeros(0)


def _aware(text: str) -> pd.Timestamp:
    moment = pd.Timestamp(text)
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment


def group_codes(frame: pd.DataFrame, by) -> tuple[np.ndarray, pd.DataFrame]:
    """(code of each row's group, the groups' keys in code order): groups sorted by their keys.

    Each key column is factorised on its own (sorted) and the codes combined, so no tuple is built."""
    by = list(by)
    if not len(frame):
        return np.zeros(0, dtype=np.intp), pd.DataFrame(columns=by)
    combined = np.zeros(len(frame), dtype=np.int64)
    levels = []
    for column in by:
        codes, uniques = pd.factorize(frame[column].to_numpy(), sort=True)
        combined = combined * len(uniques) + codes
        levels.append(uniques)
    present, inverse = np.unique(combined, return_inverse=True)
    keys, rest = {}, present
    for column, uniques in zip(reversed(by), reversed(levels)):
        rest, index = np.divmod(rest, len(uniques))
        keys[column] = np.asarray(uniques, dtype=object)[index]
    return inverse.astype(np.intp), pd.DataFrame({column: keys[column] for column in by})


def first_per_group(codes: np.ndarray, values: np.ndarray, groups: int) -> np.ndarray:
    """values at each group's first row (NaN for a group without rows)."""
    out = np.full(groups, np.nan)
    order = np.arange(len(codes))[::-1]  # the last write wins: write in reverse so the first row is kept
    out[codes[order]] = values[order]
    return out
