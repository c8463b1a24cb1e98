"""GET /api/symbol/<SYMBOL>: one symbol's recent daily bars with its MACD, TTM Squeeze and VPB series.

Computed from the store's bars cache (the technical scanners' own history) with
the scanners' own indicator code, so the chart and the scans never disagree. The
indicators run over every stored bar (up to a year: their warm-up), and the last
`days` bars are answered as columns (arrays of equal length, oldest first; null
where an indicator has no value yet).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from workers.indicators import compute_macd, compute_ttm, compute_vpb

WARMUP_BARS = 400  # read this many bars before the answered ones, at most: the indicators' lookback


def _column(frame_or_series, places: int) -> list:
    """Rounded as the datasets store the same values (workers/store/rows.py): prices 2, indicators 4."""
    values = np.asarray(frame_or_series, dtype=float).reshape(-1)
    return [round(float(v), places) if math.isfinite(v) else None for v in values]


def _flags(frame, valid) -> list:
    values = np.asarray(frame, dtype=float).reshape(-1)
    return [bool(v) if ok and math.isfinite(v) else None for v, ok in zip(values, valid)]


def symbol_series(bars: Sequence[tuple], days: int) -> dict[str, Any]:
    """`bars`: (date, open, high, low, close, volume) rows, oldest first -> the answer's `data`."""
    frame = pd.DataFrame.from_records(list(bars), columns=["date", "open", "high", "low", "close", "volume"])
    frame = frame.set_index(pd.DatetimeIndex(pd.to_datetime(frame["date"]), name="date")).drop(columns="date")
    wide = {name: frame[[name]].astype(float).rename(columns={name: "S"}) for name in frame.columns}
    macd = compute_macd(wide["close"])
    ttm = compute_ttm(wide["high"], wide["low"], wide["close"])
    vpb = compute_vpb(wide["high"], wide["low"], wide["close"], wide["volume"])
    tail = slice(max(0, len(frame) - days), None)
    momentum = np.asarray(ttm.momentum, dtype=float).reshape(-1)
    band_known = np.isfinite(np.asarray(ttm.bb_upper, dtype=float).reshape(-1)) & \
        np.isfinite(np.asarray(ttm.kc_upper, dtype=float).reshape(-1))
    vpb_known = np.isfinite(np.asarray(vpb.volume_ma, dtype=float).reshape(-1))
    data = {"date": [d.strftime("%Y-%m-%d") for d in frame.index]}
    data.update({name: _column(frame[name], 2) for name in ("open", "high", "low", "close")})
    data.update(volume=_column(frame["volume"], 0))
    data.update(macd=_column(macd.macd, 4), macd_signal=_column(macd.signal, 4),
                macd_histogram=_column(macd.histogram, 4), squeeze_on=_flags(ttm.squeeze_on, band_known),
                ttm_momentum=_column(momentum, 4), bb_upper=_column(ttm.bb_upper, 2),
                bb_lower=_column(ttm.bb_lower, 2), kc_upper=_column(ttm.kc_upper, 2),
                kc_lower=_column(ttm.kc_lower, 2), vpb_breakout=_flags(vpb.buy_signal, vpb_known),
                vpb_breakdown=_flags(vpb.sell_signal, vpb_known))
    return {name: values[tail] for name, values in data.items()}
