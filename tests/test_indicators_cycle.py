"""The cycle scanner's indicator: components by hand, equal to a per-symbol loop, and never looking ahead."""
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from tests.cycle_reference import cycle_series, scan_symbol
from workers.indicators import cycle_arrays, scan_cycles
from workers.indicators.cycle import CONFIRM


def walks(symbols, bars, seed=7):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (bars, symbols)), axis=0))
    return pd.DataFrame(close, index=pd.bdate_range("2025-01-02", periods=bars),
                        columns=[f"S{i}" for i in range(symbols)])


def test_components_of_a_straight_ramp_by_hand():
    # p[t] = t: smooth = t - 1.5; inphase = 7 / 2; quadrature = (2 + 2 x 2) / 4; momentum = 5;
    # detrended = (t - 1.5) - (t - 12) = 10.5 every bar, so its spread is 0 and the cycle 0
    r = cycle_arrays(np.arange(60, dtype=float)[:, None])
    assert r.smooth[10, 0] == pytest.approx(8.5) and np.isnan(r.smooth[2, 0])
    assert r.inphase[20, 0] == pytest.approx(3.5) and r.quadrature[20, 0] == pytest.approx(1.5)
    assert r.phase[20, 0] == pytest.approx(math.degrees(math.atan2(1.5, 3.5)))  # 23.2 degrees
    assert r.momentum[20, 0] == pytest.approx(5.0)
    assert np.isnan(r.cycle[42, 0]) and r.cycle[43, 0] == 0.0
    assert not r.peak.any() and not r.bottom.any()


def test_a_falling_ramp_is_in_the_third_quadrant_not_folded_into_the_first():
    r = cycle_arrays(np.arange(60, 0, -1, dtype=float)[:, None])
    assert r.phase[20, 0] == pytest.approx(180 + math.degrees(math.atan2(1.5, 3.5)))  # 203.2, arctan gave 23.2


def test_equal_to_the_per_symbol_loop_with_histories_of_different_lengths():
    close = walks(12, 140)
    close.iloc[:30, 3] = np.nan  # a symbol listed later
    close.iloc[:90, 7] = np.nan
    r = cycle_arrays(close.to_numpy())
    table = scan_cycles(close).set_index("symbol")
    for column, symbol in enumerate(close.columns):
        prices = close[symbol].dropna().tolist()
        start = len(close) - len(prices)
        want = cycle_series(prices)
        for name in ("smooth", "inphase", "quadrature", "phase", "cycle", "momentum"):
            got = getattr(r, name)[start:, column]
            expected = np.array([np.nan if v is None else v for v in want[name]])
            assert np.allclose(got, expected, rtol=1e-9, atol=1e-9, equal_nan=True), (symbol, name)
        assert list(np.flatnonzero(r.peak[start:, column])) == want["peaks"], symbol
        assert list(np.flatnonzero(r.bottom[start:, column])) == want["bottoms"], symbol
        scanned = scan_symbol(prices)
        if scanned is None:
            assert symbol not in table.index
            continue
        kind, extremum, last_peak, last_bottom = scanned
        row = table.loc[symbol]
        dates = [d.strftime("%Y-%m-%d") for d in close.index[start:]]
        assert row.signal_type == kind and row.extremum_date == (dates[extremum] if extremum is not None else None)
        assert row.last_peak_date == (dates[last_peak] if last_peak is not None else None)
        assert row.last_bottom_date == (dates[last_bottom] if last_bottom is not None else None)


def test_the_scan_reports_peaks_and_bottoms_over_many_symbols():
    counts = scan_cycles(walks(400, 250, seed=3))["signal_type"].value_counts()
    assert counts.get("PEAK", 0) > 0 and counts.get("BOTTOM", 0) > 0 and counts.get("NONE", 0) > 0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), extra=st.integers(1, 40))
def test_appending_future_bars_never_changes_a_reported_extremum(seed, extra):
    close = walks(6, 120 + extra, seed=seed).to_numpy()
    short, long = cycle_arrays(close[:120]), cycle_arrays(close)
    known = 120 - CONFIRM  # the bars whose five bars after exist in the short history
    # everything the short history reports, or rules out, stays exactly so
    assert (short.peak[:known] == long.peak[:known]).all() and (short.bottom[:known] == long.bottom[:known]).all()
    # and nothing is reported for the last bars before the bars after them exist
    assert not short.peak[known:].any() and not short.bottom[known:].any()


def test_an_extremum_is_reported_exactly_when_its_fifth_bar_after_arrives():
    close = walks(300, 200, seed=11)
    full = cycle_arrays(close.to_numpy())
    rows, columns = np.nonzero(full.peak[100:190])
    assert len(rows), "the random walks have peaks"
    row, column = rows[0] + 100, columns[0]
    symbol = close.columns[column]
    for bars, reported in ((row + CONFIRM, False), (row + CONFIRM + 1, True), (row + CONFIRM + 2, False)):
        scan = scan_cycles(close.iloc[:bars, [column]]).set_index("symbol")
        assert (scan.at[symbol, "signal_type"] == "PEAK") is reported, bars
    scan = scan_cycles(close.iloc[:row + CONFIRM + 1, [column]]).iloc[0]
    assert scan.extremum_date == close.index[row].strftime("%Y-%m-%d")
    assert scan.extremum_price == close.iat[row, column] and scan.action == "SELL"
