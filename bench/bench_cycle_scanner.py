"""The cycle scanner on 5,000 symbols x 250 daily bars in one vectorised pass, against a per-symbol loop.

Baselines, measured in the same run on the same seeded random walks (bench_indicators' frames):
- the same NumPy code called once per symbol (one-column frames): what vectorising across symbols
  buys, as for MACD against talib per symbol;
- the old scanner's way, plain Python bar by bar per symbol (tests/cycle_reference.py), on the first
  200 symbols and scaled to 5,000.
Before any figure counts, the vectorised scan's rows are compared with the per-symbol scans' and with
the Python loop's signals. Best of 3 (the loops: 1).

Target: the vectorised scan at least 5x faster than the faster of the two per-symbol loops (the
NumPy one pays pandas' per-call overhead 5,000 times, so the plain-Python one is the faster).
Run: ``python -m bench cycle_scanner``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import pandas as pd

from bench.common import best_of
from bench.bench_indicators import make_frames
from tests.cycle_reference import scan_symbol
from workers.indicators import scan_cycles

TARGET = 5.0
PYTHON_SAMPLE = 200


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal rows: text exactly, numbers to 1e-9 (a window summed in another memory order rounds apart)."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    for column in a.columns:
        x, y = a[column].reset_index(drop=True), b[column].reset_index(drop=True)
        if x.dtype.kind == "f":
            if not np.allclose(x.to_numpy(), y.to_numpy(), rtol=1e-9, atol=1e-12, equal_nan=True):
                return False
        elif not x.equals(y):
            return False
    return True


def per_symbol(close: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([scan_cycles(close.iloc[:, [i]]) for i in range(close.shape[1])], ignore_index=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_cycle_scanner", description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=5000)
    parser.add_argument("--bars", type=int, default=250)
    args = parser.parse_args(argv)
    close = make_frames(args.symbols, args.bars)["close"]
    print(f"{args.symbols} symbols x {args.bars} bars")
    scan_cycles(close.iloc[:, :10])  # warm up
    t_vector, table = best_of(3, lambda: scan_cycles(close))
    t_loop, looped = best_of(1, lambda: per_symbol(close))
    sample = close.iloc[:, :PYTHON_SAMPLE]
    t_python, python = best_of(1, lambda: [scan_symbol(sample[s].tolist()) for s in sample.columns])
    scaled = t_python * args.symbols / sample.shape[1]

    same = same_rows(table, looped)
    by_symbol = table.set_index("symbol")
    python_same = all(by_symbol.at[s, "signal_type"] == want[0] for s, want in zip(sample.columns, python)
                      if want is not None)
    ratio = min(t_loop, scaled) / t_vector
    counts = table["signal_type"].value_counts().to_dict()
    print(f"per-symbol loop of the same NumPy code   {t_loop * 1e3:9.1f} ms   / vectorised = {t_loop / t_vector:.0f}")
    print(f"plain-Python bar-by-bar loop (the old way): {sample.shape[1]} symbols {t_python * 1e3:.0f} ms, scaled "
          f"to {args.symbols}: {scaled * 1e3:.0f} ms   / vectorised = {scaled / t_vector:.0f}")
    print(f"vectorised scan across symbols           {t_vector * 1e3:9.1f} ms   faster loop / vectorised = "
          f"{ratio:5.1f}  (target >= {TARGET:g})")
    print(f"signals on the last bar: {counts}")
    print(f"vectorised rows equal to the per-symbol scans: {same}; signals equal to the Python loop's: {python_same}")
    if not (same and python_same):
        print("the vectorised scan does not match its baselines", file=sys.stderr)
        return 1
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
