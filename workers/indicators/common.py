"""Array helpers shared by the indicator modules.

Every helper works on a *wide* float64 array: axis 0 is time (ascending), axis 1
is the symbol.  A symbol with a shorter history has NaN in its leading rows.
Rolling windows propagate NaN, so a window touching a missing bar is NaN and
each column's indicator starts at its own first valid bar, exactly as if that
column had been computed alone.  Nothing here loops over symbols.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view


def as_values(frame: pd.DataFrame | np.ndarray, contiguous: bool = True) -> np.ndarray:
    """The data of a wide frame as a 2-D float64 array, row-major unless `contiguous` is False.

    pandas keeps a frame's columns contiguous; window reductions over rows are several
    times faster on a row-major copy, while a row-by-row recursion copies rows itself.
    """
    values = frame.to_numpy(dtype=np.float64) if isinstance(frame, pd.DataFrame) else np.asarray(frame, np.float64)
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D (dates x symbols) array, got {values.ndim} dimension(s)")
    return np.ascontiguousarray(values) if contiguous else values


def check_same_shape(**frames: pd.DataFrame) -> pd.DataFrame:
    """Raise ValueError unless all frames share index and columns; return the first."""
    (first_name, first), *rest = frames.items()
    for name, frame in rest:
        if not (frame.index.equals(first.index) and frame.columns.equals(first.columns)):
            raise ValueError(f"{name} must have the same dates and symbols as {first_name}")
    return first


def first_valid_rows(values: np.ndarray) -> np.ndarray:
    """Index of each column's first non-NaN row; len(values) for an all-NaN column."""
    if values.shape[0] == 0:
        return np.zeros(values.shape[1], dtype=np.intp)
    valid = ~np.isnan(values)
    return np.where(valid.any(axis=0), valid.argmax(axis=0), values.shape[0])


def shift_down(values: np.ndarray, periods: int = 1) -> np.ndarray:
    """Rows moved `periods` bars later (row t holds row t - periods), NaN on top."""
    out = np.full_like(values, np.nan)
    if periods < values.shape[0]:
        out[periods:] = values[: values.shape[0] - periods]
    return out


def _windows(values: np.ndarray, window: int) -> np.ndarray:
    """Read-only view of shape (T - window + 1, N, window) over trailing windows."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    return sliding_window_view(values, window, axis=0)


def _place(values: np.ndarray, window: int, result: np.ndarray) -> np.ndarray:
    """Put per-window results at each window's last row; NaN before the first full window."""
    out = np.full(values.shape, np.nan)
    out[window - 1 :] = result
    return out


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average of the `window` bars ending at each row (current bar included)."""
    if window > values.shape[0]:
        return np.full(values.shape, np.nan)
    return _place(values, window, _windows(values, window).sum(axis=-1) / window)


def rolling_max(values: np.ndarray, window: int) -> np.ndarray:
    """Highest value of the `window` bars ending at each row (current bar included)."""
    if window > values.shape[0]:
        return np.full(values.shape, np.nan)
    return _place(values, window, _windows(values, window).max(axis=-1))


def rolling_min(values: np.ndarray, window: int) -> np.ndarray:
    """Lowest value of the `window` bars ending at each row (current bar included)."""
    if window > values.shape[0]:
        return np.full(values.shape, np.nan)
    return _place(values, window, _windows(values, window).min(axis=-1))


def rolling_pstd(values: np.ndarray, window: int) -> np.ndarray:
    """Population (ddof=0) standard deviation of the `window` bars ending at each row.

    Computed as E[y^2] - E[y]^2 on y = values minus each column's first valid
    value, which keeps the cancellation small for drifting prices; tiny negative
    variances from rounding are clamped to zero.
    """
    if window > values.shape[0]:
        return np.full(values.shape, np.nan)
    starts = first_valid_rows(values)
    reference = values[np.minimum(starts, values.shape[0] - 1), np.arange(values.shape[1])]
    y = values - np.nan_to_num(reference)
    mean = _windows(y, window).sum(axis=-1) / window
    mean_sq = _windows(y * y, window).sum(axis=-1) / window
    return _place(values, window, np.sqrt(np.maximum(mean_sq - mean * mean, 0.0)))


def rolling_linreg_end(values: np.ndarray, window: int) -> np.ndarray:
    """Value at the last point of the least-squares line through the `window` bars ending at each row.

    With x = 0..n-1 and centred weights w = x - (n-1)/2 the slope is
    sum(w*y) / sum(w^2) and the fitted value at x = n-1 is mean(y) + slope*(n-1)/2.
    """
    if window > values.shape[0]:
        return np.full(values.shape, np.nan)
    if window == 1:
        return values.copy()
    weights = np.arange(window) - (window - 1) / 2.0
    windows = _windows(values, window)
    slope = (windows @ weights) / (weights @ weights)
    mean = windows.sum(axis=-1) / window
    return _place(values, window, mean + slope * (window - 1) / 2.0)


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high - low, |high - previous close|, |low - previous close|).

    On a column's first valid bar there is no previous close and the true range
    is high - low (NaN-ignoring max), as the old per-symbol pandas code had it.
    """
    prev_close = shift_down(close)
    return np.fmax(high - low, np.fmax(np.abs(high - prev_close), np.abs(low - prev_close)))


def last_rows(values: np.ndarray, count: int = 2) -> np.ndarray:
    """The last `count` rows (NaN-padded on top if there are fewer)."""
    out = np.full((count, values.shape[1]), np.nan)
    take = min(count, values.shape[0])
    if take:
        out[count - take :] = values[values.shape[0] - take :]
    return out


def price_fields(close: np.ndarray) -> dict[str, np.ndarray]:
    """price, price_change and price_change_pct of each column's last bar vs the bar before."""
    prev, last = last_rows(close, 2)
    change = last - prev
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = change / prev * 100.0
    return {"price": last, "price_change": change, "price_change_pct": pct}


def iso_dates(index: pd.Index) -> np.ndarray:
    """Index labels as 'YYYY-MM-DD' strings (object array)."""
    return np.array([pd.Timestamp(label).strftime("%Y-%m-%d") for label in index], dtype=object)


def scan_table(symbols: pd.Index, keep: np.ndarray, fields: dict[str, np.ndarray], order: tuple[str, ...]) -> pd.DataFrame:
    """One row per kept symbol, columns in `order` (symbol first), fresh RangeIndex.

    Text columns stay object dtype so that None stays None (pandas 3 would infer
    its string dtype and turn None into NaN); ``to_dict("records")`` then yields
    plain Python str/None/bool/int/float values ready for JSON.
    """
    data = {"symbol": pd.Series(np.asarray(symbols, dtype=object)[keep], dtype=object)}
    for name in order[1:]:
        values = np.asarray(fields[name])[keep]
        data[name] = pd.Series(values, dtype=object) if values.dtype == object else values
    return pd.DataFrame(data, columns=list(order))
