"""The cycle scanner's indicator (Ehlers-style cycle phase) on wide frames, peaks and bottoms confirmed
only by bars that exist.

On daily closes p, per symbol (column), every step causal, NaN until its inputs exist:

    smooth     (p[t] + 2 p[t-1] + 2 p[t-2] + p[t-3]) / 6                      4-bar weighted smoothing
    inphase    (smooth[t] - smooth[t-7]) / 2
    quadrature (smooth[t] - smooth[t-2] + 2 (smooth[t-1] - smooth[t-3])) / 4
    phase      the accumulated phase of (inphase, quadrature), wrapped to 0..360 degrees
    detrended  smooth[t] - mean(smooth[t-20 .. t-1])
    cycle      detrended[t] / std(detrended[t-20 .. t-1])   (normalised; 0 when that std is 0)
    strength   |cycle|;  momentum  smooth[t] - smooth[t-5]

The phase uses all four quadrants: accumulating each bar's change of the angle of (inphase, quadrature),
taken the short way round, and wrapping the sum to 0..360 gives exactly atan2(quadrature, inphase) mod
360, which is what is computed (a gap in a history cannot then shift it). The old service took
arctan(quadrature / inphase), two quadrants only (-90..90): its accumulation then never moved, its
phase stayed within 0..90 and 270..360, and its bottom band (120..240) could never be met.

Signals, the old service's bands and thresholds:
- a PEAK at bar j: phase in 315..45 (through 0), cycle > 1.5, strength > 1.0, and cycle[j] the highest
  of bars j-5 .. j+5. It is reported once bar j+5 exists, never before: a scan on bar t reports the
  peak of bar t-5, with that bar's date (`extremum_date`) and close. (The old scanner compared bar j
  with the five bars after it on the last bar too, bars it did not have: it looked into the future.)
- a BOTTOM at bar j: phase in 120..240, cycle < -1.3, strength > 0.8, momentum < 0, and cycle[j] the
  lowest of bars j-5 .. j+5; reported likewise at bar j+5;
- APPROACHING_PEAK on the last bar: phase in 270..315, cycle > 1.2, strength > 0.8;
- APPROACHING_BOTTOM on the last bar: phase in 75..120, cycle < -1.0, strength > 0.6, momentum < 0.
A scan row names the first that holds in that order (signal_strength STRONG for a peak or bottom,
MODERATE for an approach; action SELL, BUY, PREPARE_SELL, PREPARE_BUY; NONE/NONE/HOLD otherwise),
and the dates of the symbol's latest confirmed peak and bottom. Appending bars never changes an
extremum already reported: every input of its test is at or before its confirming bar.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .common import as_values, iso_dates, rolling_max, rolling_mean, rolling_min, rolling_pstd, scan_table, \
    shift_down

DETREND = 20
CONFIRM = 5  # bars on each side of an extremum
MOMENTUM = 5
CYCLE_FIELDS = ("symbol", "price", "cycle_value", "phase", "strength", "momentum", "signal_type", "signal_strength",
                "action", "extremum_date", "extremum_price", "last_peak_date", "last_bottom_date")
SIGNALS = (("PEAK", "STRONG", "SELL"), ("BOTTOM", "STRONG", "BUY"), ("APPROACHING_PEAK", "MODERATE", "PREPARE_SELL"),
           ("APPROACHING_BOTTOM", "MODERATE", "PREPARE_BUY"))
NO_SIGNAL = ("NONE", "NONE", "HOLD")


class CycleResult(NamedTuple):
    """Per bar, shaped like the input: the indicator and, for peak/bottom, True at the extremum's own bar
    once it is confirmed (so the last CONFIRM rows are never True)."""

    smooth: np.ndarray
    inphase: np.ndarray
    quadrature: np.ndarray
    phase: np.ndarray
    cycle: np.ndarray
    momentum: np.ndarray
    peak: np.ndarray
    bottom: np.ndarray
    approaching_peak: np.ndarray
    approaching_bottom: np.ndarray


def cycle_arrays(close) -> CycleResult:
    p = as_values(close)
    smooth = (p + 2 * shift_down(p, 1) + 2 * shift_down(p, 2) + shift_down(p, 3)) / 6
    inphase = (smooth - shift_down(smooth, 7)) / 2
    quadrature = (smooth - shift_down(smooth, 2) + 2 * (shift_down(smooth, 1) - shift_down(smooth, 3))) / 4
    phase = np.mod(np.degrees(np.arctan2(quadrature, inphase)), 360.0)  # NaN where either is NaN
    detrended = smooth - shift_down(rolling_mean(smooth, DETREND), 1)
    spread = shift_down(rolling_pstd(detrended, DETREND), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cycle = np.where(spread > 0, detrended / spread, np.where(spread == 0, 0.0, np.nan))
    momentum = smooth - shift_down(smooth, MOMENTUM)
    strength = np.abs(cycle)
    window = 2 * CONFIRM + 1
    with np.errstate(invalid="ignore"):
        is_max = shift_down(cycle, CONFIRM) == rolling_max(cycle, window)  # at bar t: is bar t-5 the top of t-10..t
        is_min = shift_down(cycle, CONFIRM) == rolling_min(cycle, window)
        peak_band = (phase >= 315) | (phase <= 45)
        peak = peak_band & (cycle > 1.5) & (strength > 1.0)
        bottom = (phase >= 120) & (phase <= 240) & (cycle < -1.3) & (strength > 0.8) & (momentum < 0)
        approaching_peak = (phase >= 270) & (phase < 315) & (cycle > 1.2) & (strength > 0.8)
        approaching_bottom = (phase >= 75) & (phase < 120) & (cycle < -1.0) & (strength > 0.6) & (momentum < 0)
    # an extremum of bar j is known at bar j + CONFIRM: move the confirmation back onto bar j
    peak_at = peak & _back(is_max, CONFIRM)
    bottom_at = bottom & _back(is_min, CONFIRM)
    return CycleResult(smooth, inphase, quadrature, phase, cycle, momentum, peak_at, bottom_at, approaching_peak,
                       approaching_bottom)


def _back(confirmed: np.ndarray, bars: int) -> np.ndarray:
    """Row j holds row j + bars (False where that row does not exist yet)."""
    out = np.zeros_like(confirmed, dtype=bool)
    out[: confirmed.shape[0] - bars] = confirmed[bars:]
    return out


def _last_true_rows(flags: np.ndarray) -> np.ndarray:
    """Per column, the last row where `flags` is True, or -1."""
    rows = flags.shape[0]
    if rows == 0:
        return np.full(flags.shape[1], -1)
    last = rows - 1 - np.argmax(flags[::-1], axis=0)
    return np.where(flags.any(axis=0), last, -1)


def scan_cycles(close: pd.DataFrame) -> pd.DataFrame:
    """One row per symbol (CYCLE_FIELDS) for the last bar; symbols whose cycle is not yet defined there
    (about 2 x DETREND + 4 closes) are left out."""
    values = as_values(close)
    r = cycle_arrays(values)
    n = values.shape[0]
    if n == 0:
        return pd.DataFrame(columns=list(CYCLE_FIELDS))
    dates = iso_dates(close.index)
    j = n - 1 - CONFIRM
    now = {"PEAK": r.peak[j] if j >= 0 else np.zeros(values.shape[1], bool),
           "BOTTOM": r.bottom[j] if j >= 0 else np.zeros(values.shape[1], bool),
           "APPROACHING_PEAK": r.approaching_peak[-1], "APPROACHING_BOTTOM": r.approaching_bottom[-1]}
    kind = np.full(values.shape[1], -1)
    for i, (name, _, _) in reversed(list(enumerate(SIGNALS))):  # the first in SIGNALS order wins
        kind = np.where(now[name], i, kind)
    table = [*SIGNALS, NO_SIGNAL]
    extremum = (kind == 0) | (kind == 1)

    def dated(rows):
        return np.array([dates[i] if i >= 0 else None for i in rows], dtype=object)

    fields = {
        "price": values[-1], "cycle_value": r.cycle[-1], "phase": r.phase[-1], "strength": np.abs(r.cycle[-1]),
        "momentum": r.momentum[-1],
        "signal_type": np.array([table[k][0] for k in kind], dtype=object),
        "signal_strength": np.array([table[k][1] for k in kind], dtype=object),
        "action": np.array([table[k][2] for k in kind], dtype=object),
        "extremum_date": np.where(extremum, dates[j] if j >= 0 else None, None).astype(object),
        "extremum_price": np.where(extremum, values[j] if j >= 0 else np.nan, np.nan),
        "last_peak_date": dated(_last_true_rows(r.peak)), "last_bottom_date": dated(_last_true_rows(r.bottom)),
    }
    keep = ~(np.isnan(r.cycle[-1]) | np.isnan(r.phase[-1]) | np.isnan(values[-1]))
    return scan_table(close.columns, keep, fields, CYCLE_FIELDS)
