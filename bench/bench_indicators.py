"""Indicator scans on 5,000 symbols x 250 daily bars, against TA-Lib called per symbol.

Baseline, measured in the same run on the same wide frame: ``talib.MACD`` called
once per symbol (its columns are contiguous in the frame, TA-Lib's best case).
Target: our MACD scan at least as fast (talib_loop / ours >= 1.0).  Also printed,
for information: the full-history MACD arrays, the three scans together, and a
pandas ``ewm`` MACD on the same frame.  Every time is the best of 3 repetitions.
The scan's last-bar MACD is checked against TA-Lib's before any figure counts.

Run: ``python -m bench indicators`` or ``python -m bench.bench_indicators [--symbols N --bars N]``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd
import talib

from bench.common import best_of
from workers.indicators import macd_arrays, scan_macd, scan_ttm, scan_vpb

TARGET = 1.0


def make_frames(n_symbols: int, n_bars: int, seed: int = 20240601) -> dict[str, pd.DataFrame]:
    """Seeded geometric random walks as wide OHLCV frames (dates x symbols)."""
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(rng.uniform(0, 3, n_symbols) + np.cumsum(rng.normal(0, 0.02, (n_bars, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.015, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.015, close.shape))
    volume = np.round(rng.lognormal(13, 0.6, close.shape))
    index = pd.bdate_range(end="2025-06-30", periods=n_bars)
    symbols = [f"SYM{i:05d}" for i in range(n_symbols)]
    return {name: pd.DataFrame(values, index=index, columns=symbols)
            for name, values in dict(open=open_, high=high, low=low, close=close, volume=volume).items()}


def talib_loop(close: pd.DataFrame) -> np.ndarray:
    """talib.MACD per symbol; returns each symbol's last MACD value."""
    values = close.to_numpy()
    last = np.empty(values.shape[1])
    for column in range(values.shape[1]):
        last[column] = talib.MACD(values[:, column], 12, 26, 9)[0][-1]
    return last


def pandas_ewm_macd(close: pd.DataFrame) -> pd.DataFrame:
    line = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    return line - line.ewm(span=9, adjust=False).mean()


def all_scans(f: dict[str, pd.DataFrame]) -> int:
    rows = scan_macd(f["close"])
    rows_ttm = scan_ttm(f["high"], f["low"], f["close"])
    rows_vpb = scan_vpb(f["high"], f["low"], f["close"], f["volume"])
    return len(rows) + len(rows_ttm) + len(rows_vpb)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_indicators", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--bars", type=int, default=250)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    frames = make_frames(args.symbols, args.bars)
    close = frames["close"]
    print(f"{args.symbols} symbols x {args.bars} bars, best of {args.repeats}")

    talib_loop(close.iloc[:, :10])  # warm both paths up
    all_scans({name: f.iloc[:, :10] for name, f in frames.items()})
    t_talib, talib_last = best_of(args.repeats, lambda: talib_loop(close))
    t_scan, table = best_of(args.repeats, lambda: scan_macd(close))
    t_full, _ = best_of(args.repeats, lambda: macd_arrays(close.to_numpy()))
    t_all, _ = best_of(args.repeats, lambda: all_scans(frames))
    t_ewm, _ = best_of(args.repeats, lambda: pandas_ewm_macd(close))

    mismatch = np.max(np.abs(table["macd"].to_numpy() - talib_last)) if len(table) == args.symbols else np.inf
    ratio = t_talib / t_scan
    print(f"talib.MACD per-symbol loop      {t_talib * 1e3:8.1f} ms")
    print(f"our MACD scan (last bar)        {t_scan * 1e3:8.1f} ms   talib_loop / ours = {ratio:5.2f}  (target >= {TARGET})")
    print(f"our MACD, full-history arrays   {t_full * 1e3:8.1f} ms   talib_loop / ours = {t_talib / t_full:5.2f}  (info)")
    print(f"our MACD + TTM + VPB scans      {t_all * 1e3:8.1f} ms   talib_loop / ours = {t_talib / t_all:5.2f}  (info)")
    print(f"pandas ewm MACD (wide frame)    {t_ewm * 1e3:8.1f} ms   ewm / our MACD scan = {t_ewm / t_scan:5.1f}  (info)")
    print(f"max |scan MACD - talib| on the last bar: {mismatch:.2e}")
    if not mismatch <= 1e-9 * float(close.abs().max().max()):
        print("MACD does not match talib.MACD", file=sys.stderr)
        return 1
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
