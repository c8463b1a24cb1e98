"""Volume-price breakout (VPB) on wide frames.

Definitions (the old per-symbol scanner's, made explicit):

* volume_ma30: simple average of the 30 volumes ending at the current bar, the
  current bar INCLUDED (``volume[t-29..t]``), as the old ``rolling(30).mean()``
  read at the last row had it.  volume_surge = volume > volume_ma30.
* highest_high_7 / lowest_low_7: highest high / lowest low of the 7 bars BEFORE
  the current one (``t-7..t-1``), the current bar EXCLUDED.
* buy_signal = volume_surge and close > highest_high_7;
  sell_signal = volume_surge and close < lowest_low_7 (both can never hold).
* pattern: the old dashboard's three values, so its client keeps working:
  'bullish_breakout' (buy_signal), 'bearish_breakdown' (sell_signal), else
  'none' (a volume surge inside the range, or a price move on ordinary volume).

A bar's values need 30 valid volumes and 7 valid earlier bars, so a column's
first defined bar is its 30th; every window containing a missing bar is NaN.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .common import (
    as_values, check_same_shape, price_fields, rolling_max, rolling_mean, rolling_min,
    scan_table, shift_down,
)

VPB_FIELDS = (
    "symbol", "price", "price_change", "price_change_pct", "buy_signal", "sell_signal",
    "volume_surge", "current_volume", "volume_ma30", "volume_surge_pct", "highest_high_7",
    "lowest_low_7", "breakout_distance_pct", "breakdown_distance_pct", "pattern",
)
PATTERN_BREAKOUT = "bullish_breakout"
PATTERN_BREAKDOWN = "bearish_breakdown"
PATTERN_NONE = "none"


class VPBResult(NamedTuple):
    """Per-bar VPB values, each shaped like the input (booleans False where undefined)."""

    buy_signal: pd.DataFrame
    sell_signal: pd.DataFrame
    volume_surge: pd.DataFrame
    volume_ma: pd.DataFrame
    highest_high: pd.DataFrame
    lowest_low: pd.DataFrame


def vpb_arrays(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray,
               volume_window: int = 30, range_window: int = 7) -> dict[str, np.ndarray]:
    """Per-bar VPB arrays: volume_ma, highest_high, lowest_low (float, NaN where undefined),
    volume_surge, buy_signal, sell_signal (bool, False where any input is undefined)."""
    high, low, close, volume = (as_values(a) for a in (high, low, close, volume))
    volume_ma = rolling_mean(volume, volume_window)
    highest_high = shift_down(rolling_max(high, range_window))
    lowest_low = shift_down(rolling_min(low, range_window))
    defined = ~(np.isnan(volume_ma) | np.isnan(highest_high) | np.isnan(lowest_low) | np.isnan(close))
    volume_surge = defined & (volume > volume_ma)
    return {
        "volume_ma": volume_ma,
        "highest_high": highest_high,
        "lowest_low": lowest_low,
        "volume_surge": volume_surge,
        "buy_signal": volume_surge & (close > highest_high),
        "sell_signal": volume_surge & (close < lowest_low),
    }


def compute_vpb(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, volume: pd.DataFrame,
                volume_window: int = 30, range_window: int = 7) -> VPBResult:
    """VPB of every bar and symbol of wide high/low/close/volume frames."""
    like = check_same_shape(close=close, high=high, low=low, volume=volume)
    arrays = vpb_arrays(*(f.to_numpy(np.float64) for f in (high, low, close, volume)), volume_window, range_window)
    return VPBResult(*(pd.DataFrame(arrays[name], index=like.index, columns=like.columns)
                       for name in VPBResult._fields))


def _pattern(buy: np.ndarray, sell: np.ndarray) -> np.ndarray:
    return np.select([buy, sell], [PATTERN_BREAKOUT, PATTERN_BREAKDOWN], PATTERN_NONE).astype(object)


def scan_vpb(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, volume: pd.DataFrame,
             volume_window: int = 30, range_window: int = 7) -> pd.DataFrame:
    """One row per symbol for the last bar, columns VPB_FIELDS (the API row without scanned_at).

    current_volume and volume_ma30 are whole numbers (int, truncated as the old
    service's ``int()`` did); the percentages use the unrounded average.
    volume_surge_pct = (volume / volume_ma30 - 1) * 100, 0.0 when the average is 0;
    breakout_distance_pct = (close / highest_high_7 - 1) * 100 and
    breakdown_distance_pct = (close / lowest_low_7 - 1) * 100.
    A symbol is left out unless its last bar is fully defined (at least
    `volume_window` bars, and the last two closes and the last volume known).
    """
    like = check_same_shape(close=close, high=high, low=low, volume=volume)
    # Only the last bar is reported: compute on the shortest tail that defines it.
    tail = max(volume_window, range_window + 1)
    h, lo, c, v = (as_values(f.to_numpy(np.float64)[-tail:]) for f in (high, low, close, volume))
    if len(c) == 0:
        return pd.DataFrame(columns=list(VPB_FIELDS))
    arrays = vpb_arrays(h, lo, c, v, volume_window, range_window)
    last = {name: a[-1] for name, a in arrays.items()}
    current_volume = v[-1]
    volume_ma = last["volume_ma"]
    fields = price_fields(c)
    with np.errstate(divide="ignore", invalid="ignore"):
        surge_pct = np.where(volume_ma > 0, (current_volume / volume_ma - 1.0) * 100.0, 0.0)
        breakout_pct = (c[-1] / last["highest_high"] - 1.0) * 100.0
        breakdown_pct = (c[-1] / last["lowest_low"] - 1.0) * 100.0
    keep = ~(np.isnan(volume_ma) | np.isnan(last["highest_high"]) | np.isnan(last["lowest_low"])
             | np.isnan(current_volume) | np.isnan(fields["price"]) | np.isnan(fields["price_change"]))
    fields.update(
        buy_signal=last["buy_signal"],
        sell_signal=last["sell_signal"],
        volume_surge=last["volume_surge"],
        current_volume=np.trunc(np.nan_to_num(current_volume)).astype(np.int64),
        volume_ma30=np.trunc(np.nan_to_num(volume_ma)).astype(np.int64),
        volume_surge_pct=surge_pct,
        highest_high_7=last["highest_high"],
        lowest_low_7=last["lowest_low"],
        breakout_distance_pct=breakout_pct,
        breakdown_distance_pct=breakdown_pct,
        pattern=_pattern(last["buy_signal"], last["sell_signal"]),
    )
    return scan_table(like.columns, keep, fields, VPB_FIELDS)
