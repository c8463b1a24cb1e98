"""TTM Squeeze on wide frames.

Definitions (length 20, Bollinger 2.0, Keltner 1.5 unless told otherwise):

* Bollinger Bands: SMA20(close) +/- 2.0 x POPULATION standard deviation (ddof=0)
  of the same 20 closes.
* Keltner Channels: SMA20(close) +/- 1.5 x ATR20, where ATR20 is the 20-bar
  SIMPLE average of the true range.  This is what ThinkOrSwim's
  KeltnerChannels study (used by its TTM_Squeeze) and LazyBear's squeeze
  indicator compute, and what the old per-symbol scanner did; Wilder's
  smoothing (the "classic" ATR) would move the channels slightly.  The true
  range of a column's first bar, which has no previous close, is high - low.
* squeeze_on: bb_upper < kc_upper and bb_lower > kc_lower (False until both
  bands exist).  Both bands share the SMA20 middle line, so this is evaluated as
  2.0 x stdev < 1.5 x ATR20: the same test without the rounding of adding the
  middle line.
* fired: the first bar off after one or more bars on.  It is counted only on a
  bar whose momentum exists, since its direction is that momentum's sign.
* momentum: the value at the last point of the least-squares line through the
  last 20 values of ``close - (avg(highest high 20, lowest low 20) + SMA20(close)) / 2``
  (LazyBear's ``linreg(..., 20, 0)``).  It needs 2 x 20 - 1 = 39 bars.

Scan row (one per symbol, last bar):

* signal: 'active' if the squeeze is on at the last bar, else 'fired' if it
  fired within the last `fire_lookback` (5) bars, the last bar included, else 'none'.
* momentum_direction: 'bullish' if momentum > 0 else 'bearish' (the sign, as
  the old service reported it; not rising/falling versus the previous bar;
  exactly 0 is 'bearish').
* squeeze_duration: consecutive on-bars ending at the last bar when active;
  when it just fired, the length of the squeeze that fired; else 0.
* recent_fire / fire_date / fire_direction: whether a fire happened within the
  last `fire_lookback` bars, the most recent such bar's date (YYYY-MM-DD) and
  'bullish' if momentum > 0 on that bar else 'bearish'; None without a fire.
  An active squeeze can also carry a recent fire (off for a bar, then on again).
* Symbols whose momentum or close is undefined on the last bar (fewer than 39
  valid bars) are left out.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .common import (
    as_values, check_same_shape, iso_dates, rolling_linreg_end, rolling_max, rolling_mean, rolling_min,
    rolling_pstd, scan_table, true_range,
)

TTM_FIELDS = (
    "symbol", "signal", "squeeze_on", "momentum", "momentum_direction", "squeeze_duration",
    "recent_fire", "fire_date", "fire_direction", "price", "bb_upper", "bb_lower", "kc_upper", "kc_lower",
)
SIGNAL_ACTIVE = "active"
SIGNAL_FIRED = "fired"
SIGNAL_NONE = "none"
BULLISH = "bullish"
BEARISH = "bearish"


class TTMResult(NamedTuple):
    """Per-bar TTM Squeeze values, each shaped like the input."""

    bb_upper: pd.DataFrame
    bb_lower: pd.DataFrame
    kc_upper: pd.DataFrame
    kc_lower: pd.DataFrame
    momentum: pd.DataFrame
    squeeze_on: pd.DataFrame
    squeeze_run: pd.DataFrame
    fired: pd.DataFrame


_HISTORY_BLOCK = 64  # rows of earlier history a scan examines per step, for squeezes that started before its tail


def squeeze_run_lengths(on: np.ndarray) -> np.ndarray:
    """Consecutive True values ending at each row (0 where False), column by column."""
    rows = np.arange(on.shape[0])[:, None]
    last_off = np.maximum.accumulate(np.where(on, -1, rows), axis=0)
    return (rows - last_off).astype(np.int64)


def _band_widths(high: np.ndarray, low: np.ndarray, close: np.ndarray, length: int,
                 bb_mult: float, kc_mult: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(middle line, Bollinger half-width, Keltner half-width), NaN until defined."""
    middle = rolling_mean(close, length)
    bb_width = bb_mult * rolling_pstd(close, length)
    kc_width = kc_mult * rolling_mean(true_range(high, low, close), length)
    return middle, bb_width, kc_width


def ttm_arrays(high: np.ndarray, low: np.ndarray, close: np.ndarray, length: int = 20,
               bb_mult: float = 2.0, kc_mult: float = 1.5) -> dict[str, np.ndarray]:
    """Per-bar arrays: bb_upper, bb_lower, kc_upper, kc_lower, momentum (float, NaN where
    undefined), squeeze_on, fired (bool) and squeeze_run (int, see squeeze_run_lengths)."""
    if length < 2:
        raise ValueError(f"length must be >= 2, got {length}")
    high, low, close = as_values(high), as_values(low), as_values(close)
    middle, bb_width, kc_width = _band_widths(high, low, close, length, bb_mult, kc_mult)
    squeeze_on = bb_width < kc_width
    bands_defined = ~(np.isnan(bb_width) | np.isnan(kc_width))

    donchian_mid = (rolling_max(high, length) + rolling_min(low, length)) / 2.0
    momentum = rolling_linreg_end(close - (donchian_mid + middle) / 2.0, length)

    fired = np.zeros_like(squeeze_on)
    fired[1:] = squeeze_on[:-1] & ~squeeze_on[1:] & bands_defined[1:] & ~np.isnan(momentum[1:])
    return {
        "bb_upper": middle + bb_width, "bb_lower": middle - bb_width,
        "kc_upper": middle + kc_width, "kc_lower": middle - kc_width,
        "momentum": momentum, "squeeze_on": squeeze_on, "squeeze_run": squeeze_run_lengths(squeeze_on),
        "fired": fired,
    }


def compute_ttm(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, length: int = 20,
                bb_mult: float = 2.0, kc_mult: float = 1.5) -> TTMResult:
    """TTM Squeeze of every bar and symbol of wide high/low/close frames."""
    like = check_same_shape(close=close, high=high, low=low)
    arrays = ttm_arrays(high.to_numpy(np.float64), low.to_numpy(np.float64), close.to_numpy(np.float64),
                        length, bb_mult, kc_mult)
    return TTMResult(*(pd.DataFrame(arrays[name], index=like.index, columns=like.columns)
                       for name in TTMResult._fields))


def _direction(values: np.ndarray) -> np.ndarray:
    return np.where(values > 0, BULLISH, BEARISH).astype(object)


def _runs_ending_at(high: np.ndarray, low: np.ndarray, close: np.ndarray, on_tail: np.ndarray, tail_start: int,
                    end_rows: np.ndarray, need: np.ndarray, length: int, bb_mult: float, kc_mult: float,
                    block: int) -> np.ndarray:
    """Length of the on-run ending at end_rows[j] for the columns in `need`, 0 for the others.

    on_tail is the exact squeeze state of rows tail_start..end; a run reaching
    tail_start is followed further back `block` rows at a time, and only for the
    columns whose run is still going, so a scan costs about its tail.
    """
    columns = np.arange(on_tail.shape[1])
    in_tail = squeeze_run_lengths(on_tail)[end_rows - tail_start, columns]
    runs = np.where(need, in_tail, 0)
    pending = np.flatnonzero(need & (in_tail == end_rows - tail_start + 1))
    hi = tail_start
    while pending.size and hi > 0:
        lo = max(0, hi - block)
        first = max(0, lo - length)  # enough bars before `lo` for exact bands at `lo`
        _, bb_width, kc_width = _band_widths(*(a[first:hi][:, pending] for a in (high, low, close)),
                                             length, bb_mult, kc_mult)
        run = squeeze_run_lengths((bb_width < kc_width)[lo - first :])[-1]
        runs[pending] += run
        pending = pending[run == hi - lo]
        hi = lo
    return runs


def scan_ttm(high: pd.DataFrame, low: pd.DataFrame, close: pd.DataFrame, length: int = 20,
             bb_mult: float = 2.0, kc_mult: float = 1.5, fire_lookback: int = 5) -> pd.DataFrame:
    """One row per symbol for the last bar, columns TTM_FIELDS (the API row without scanned_at).

    See the module docstring for signal, momentum_direction, squeeze_duration and the
    fire fields.  Everything but squeeze_duration depends only on the last
    2 x length + fire_lookback bars, so those are computed on that tail alone.
    """
    if fire_lookback < 1:
        raise ValueError(f"fire_lookback must be >= 1, got {fire_lookback}")
    like = check_same_shape(close=close, high=high, low=low)
    h, lo, c = (f.to_numpy(np.float64) for f in (high, low, close))
    n_rows, n_cols = c.shape
    if n_rows == 0:
        return pd.DataFrame(columns=list(TTM_FIELDS))
    columns = np.arange(n_cols)
    tail_start = max(0, n_rows - (2 * length + fire_lookback))
    a = ttm_arrays(h[tail_start:], lo[tail_start:], c[tail_start:], length, bb_mult, kc_mult)
    n_tail = n_rows - tail_start

    window = min(fire_lookback, n_tail)
    recent = a["fired"][n_tail - window :][::-1]  # most recent bar first
    recent_fire = recent.any(axis=0)
    fire_row = np.where(recent_fire, n_tail - 1 - recent.argmax(axis=0), n_tail - 1)  # row in the tail

    on_now = a["squeeze_on"][-1]
    exact_from = 0 if tail_start == 0 else length  # the first `length` tail rows lack their earlier bars
    duration = _runs_ending_at(
        h, lo, c, a["squeeze_on"][exact_from:], tail_start + exact_from,
        np.where(on_now, n_rows - 1, tail_start + fire_row - 1), on_now | recent_fire,
        length, bb_mult, kc_mult, _HISTORY_BLOCK,
    )

    fire_date = np.full(n_cols, None, dtype=object)
    if recent_fire.any():
        rows_with_fire = np.unique(fire_row[recent_fire])
        labels = dict(zip(rows_with_fire.tolist(), iso_dates(like.index[tail_start + rows_with_fire])))
        fire_date[recent_fire] = [labels[r] for r in fire_row[recent_fire].tolist()]
    fire_direction = np.full(n_cols, None, dtype=object)
    fire_direction[recent_fire] = _direction(a["momentum"][fire_row, columns])[recent_fire]

    momentum = a["momentum"][-1]
    fields = {
        "signal": np.select([on_now, recent_fire], [SIGNAL_ACTIVE, SIGNAL_FIRED], SIGNAL_NONE).astype(object),
        "squeeze_on": on_now,
        "momentum": momentum,
        "momentum_direction": _direction(momentum),
        "squeeze_duration": duration,
        "recent_fire": recent_fire,
        "fire_date": fire_date,
        "fire_direction": fire_direction,
        "price": c[-1],
        **{name: a[name][-1] for name in ("bb_upper", "bb_lower", "kc_upper", "kc_lower")},
    }
    keep = ~(np.isnan(momentum) | np.isnan(c[-1]))
    return scan_table(like.columns, keep, fields, TTM_FIELDS)
