"""MACD (12, 26, 9) on wide frames, equal to TA-Lib's ``talib.MACD``.

TA-Lib's MACD, reproduced here bar for bar (ta_MACD.c / INT_EMA):

* EMA step: ``ema = (x - ema) * k + ema`` with ``k = 2 / (period + 1)``.
* The slow EMA is seeded, at bar ``slow - 1`` of the column, with the simple
  average of its first ``slow`` closes.
* The fast EMA is *not* started at bar 0: TA-Lib starts it at the slow EMA's
  lookback, so it is seeded at the same bar ``slow - 1`` with the simple average
  of the ``fast`` closes ending there (bars ``slow - fast .. slow - 1``).
* MACD = fast EMA - slow EMA from bar ``slow - 1``; the signal EMA is seeded at
  bar ``slow + signal - 2`` with the simple average of the first ``signal`` MACD
  values.  histogram = MACD - signal.
* Lookback is ``slow + signal - 2`` (33): every output is NaN before it.  A
  ``slow`` smaller than ``fast`` is swapped, as TA-Lib does.

Columns with leading NaN start at their own first valid close, exactly as if
``talib.MACD`` were run on that column alone.  A NaN inside a column's history
makes every later bar NaN, as it does in TA-Lib: fill gaps before calling.  The recursion runs once over the
rows with whole-row NumPy operations; there is no loop over symbols and no
pandas ``ewm`` (about 14x slower on wide frames).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from .common import as_values, first_valid_rows, last_rows, price_fields, scan_table

_CHUNK = 16  # rows copied at a time into the row-major work buffer

MACD_FIELDS = (
    "symbol", "price", "price_change", "price_change_pct", "macd", "signal", "histogram",
    "bullish_cross", "bearish_cross", "trend",
)


class MACDResult(NamedTuple):
    """MACD line, signal line and histogram, each shaped like the input."""

    macd: pd.DataFrame
    signal: pd.DataFrame
    histogram: pd.DataFrame


def macd_lookback(fast: int = 12, slow: int = 26, signal: int = 9) -> int:
    """Bars TA-Lib consumes before its first MACD output (33 for 12/26/9)."""
    return max(fast, slow) + signal - 2


def _check_periods(fast: int, slow: int, signal: int) -> tuple[int, int, int]:
    for name, value, least in (("fast", fast, 2), ("slow", slow, 2), ("signal", signal, 1)):
        if value < least:
            raise ValueError(f"{name} period must be >= {least}, got {value}")
    return (slow, fast, signal) if slow < fast else (fast, slow, signal)


def _seed_groups(seed_rows: np.ndarray, n_rows: int) -> dict[int, np.ndarray]:
    """Columns grouped by the row where their EMA is seeded (rows past the end dropped)."""
    groups: dict[int, np.ndarray] = {}
    in_range = np.flatnonzero(seed_rows < n_rows)
    for row in np.unique(seed_rows[in_range]):
        groups[int(row)] = in_range[seed_rows[in_range] == row]
    return groups


def _window_sum(values: np.ndarray, rows: np.ndarray | slice, columns: np.ndarray) -> np.ndarray:
    """Sum over `rows` (in chronological order, as TA-Lib adds its seed) for the given columns."""
    window = values[rows]
    if len(columns) == values.shape[1]:  # every column seeds here (no leading NaN): no gather
        return window.sum(axis=0)
    return window[:, columns].sum(axis=0)


def _macd_rows(close: np.ndarray, fast: int, slow: int, signal: int, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """MACD and signal lines for the last `keep` rows (NaN where TA-Lib gives NaN).

    Runs the EMA recursion over all rows but stores only the last `keep`, so a scan
    that needs two rows allocates nothing of the frame's size.  The input may have
    any memory layout: rows are copied `_CHUNK` at a time into a row-major buffer.
    """
    n_rows, n_cols = close.shape
    k_fast_slow = np.array([[2.0 / (fast + 1)], [2.0 / (slow + 1)]])
    k_signal = 2.0 / (signal + 1)
    first_macd_rows = first_valid_rows(close) + slow - 1
    ema_seeds = _seed_groups(first_macd_rows, n_rows)
    signal_seeds = _seed_groups(first_macd_rows + signal - 1, n_rows)

    store_from = n_rows - keep
    macd_out = np.full((keep, n_cols), np.nan)
    signal_out = np.full((keep, n_cols), np.nan)
    if not ema_seeds:
        return macd_out, signal_out

    emas = np.full((2, n_cols), np.nan)  # row 0: fast EMA, row 1: slow EMA
    sig = np.full(n_cols, np.nan)
    recent_macd = np.full((signal, n_cols), np.nan)  # MACD of row r lives in recent_macd[r % signal]
    step2 = np.empty((2, n_cols))
    step1 = np.empty(n_cols)
    rows = np.empty((_CHUNK, n_cols))
    first_row = min(ema_seeds)
    for row in range(first_row, n_rows):
        offset = (row - first_row) % _CHUNK
        if offset == 0:
            chunk = close[row : row + _CHUNK]
            np.copyto(rows[: len(chunk)], chunk)
        np.subtract(rows[offset], emas, out=step2)  # ema = (x - ema) * k + ema, TA-Lib's step
        step2 *= k_fast_slow
        emas += step2
        columns = ema_seeds.get(row)
        if columns is not None:  # seed the EMAs of the columns whose lookback ends here
            emas[0, columns] = _window_sum(close, slice(row - fast + 1, row + 1), columns) / fast
            emas[1, columns] = _window_sum(close, slice(row - slow + 1, row + 1), columns) / slow
        macd_row = recent_macd[row % signal]
        np.subtract(emas[0], emas[1], out=macd_row)

        np.subtract(macd_row, sig, out=step1)
        step1 *= k_signal
        sig += step1
        columns = signal_seeds.get(row)
        if columns is not None:
            chronological = np.arange(row - signal + 1, row + 1) % signal
            sig[columns] = _window_sum(recent_macd, chronological, columns) / signal
        if row >= store_from:
            macd_out[row - store_from] = macd_row
            signal_out[row - store_from] = sig

    macd_out[np.isnan(signal_out)] = np.nan  # TA-Lib outputs all three from the same bar
    return macd_out, signal_out


def macd_arrays(close: np.ndarray, fast: int = 12, slow: int = 26, signal: int = 9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(macd, signal, histogram) arrays for a (dates x symbols) close array; NaN where TA-Lib gives NaN."""
    fast, slow, signal = _check_periods(fast, slow, signal)
    close = as_values(close, contiguous=False)
    macd_line, signal_line = _macd_rows(close, fast, slow, signal, keep=close.shape[0])
    return macd_line, signal_line, macd_line - signal_line


def compute_macd(close: pd.DataFrame, fast: int = 12, slow: int = 26, signal: int = 9) -> MACDResult:
    """MACD of every symbol of a wide close frame, as three frames shaped like `close`."""
    lines = macd_arrays(as_values(close, contiguous=False), fast, slow, signal)
    return MACDResult(*(pd.DataFrame(a, index=close.index, columns=close.columns) for a in lines))


def scan_macd(close: pd.DataFrame, fast: int = 12, slow: int = 26, signal: int = 9) -> pd.DataFrame:
    """One row per symbol for the last bar, columns MACD_FIELDS (the API row without scanned_at).

    * bullish_cross: MACD crossed above signal on the last bar
      (previous macd <= previous signal and macd > signal); bearish_cross mirrors it.
    * trend: 'bullish' if macd > signal on the last bar, else 'bearish' (ties are bearish),
      as the old service had it.
    * A symbol is left out unless MACD and signal exist on both of the last two bars
      (at least lookback + 2 = 35 closes for 12/26/9) and its last close is known.
    """
    fast, slow, signal = _check_periods(fast, slow, signal)
    values = as_values(close, contiguous=False)
    macd_line, signal_line = _macd_rows(values, fast, slow, signal, keep=min(2, len(values)))
    macd_prev, macd_last = last_rows(macd_line, 2)
    sig_prev, sig_last = last_rows(signal_line, 2)
    fields = price_fields(last_rows(values, 2))
    fields.update(
        macd=macd_last,
        signal=sig_last,
        histogram=macd_last - sig_last,
        bullish_cross=(macd_prev <= sig_prev) & (macd_last > sig_last),
        bearish_cross=(macd_prev >= sig_prev) & (macd_last < sig_last),
        trend=np.where(macd_last > sig_last, "bullish", "bearish").astype(object),
    )
    keep = ~(np.isnan(macd_prev) | np.isnan(sig_prev) | np.isnan(macd_last) | np.isnan(sig_last)
             | np.isnan(fields["price"]) | np.isnan(fields["price_change"]))
    return scan_table(close.columns, keep, fields, MACD_FIELDS)
