"""MACD equals TA-Lib's on every bar, per column, whatever each column's history length."""
import json

import numpy as np
import pandas as pd
import pytest
import talib

from workers.indicators import MACD_FIELDS, compute_macd, macd_arrays, macd_lookback, scan_macd

LOOKBACK = 33


def random_walks(seed, n_rows=300, n_cols=50, start=100.0):
    rng = np.random.default_rng(seed)
    return start + np.cumsum(rng.normal(0.0, start / 100.0, (n_rows, n_cols)), axis=0)


def with_leading_nans(values, seed):
    """Give most columns a shorter history; keep one long, one of exactly the lookback
    (+1 output bar), one shorter than the lookback and one empty column."""
    values = values.copy()
    n_rows, n_cols = values.shape
    starts = np.random.default_rng(seed).integers(0, n_rows - 40, n_cols)
    starts[0] = 0
    starts[1] = n_rows - (LOOKBACK + 1)  # exactly one MACD output
    starts[2] = n_rows - 20  # shorter than the lookback
    starts[3] = n_rows  # no data at all
    for column, start in enumerate(starts):
        values[:start, column] = np.nan
    return values, starts


def assert_matches_talib(close, tolerance=1e-9):
    ours = macd_arrays(close)
    for column in range(close.shape[1]):
        reference = talib.MACD(close[:, column], 12, 26, 9)
        scale = max(1.0, np.nanmax(np.abs(close[:, column]), initial=1.0))
        for mine, theirs in zip(ours, reference):
            np.testing.assert_allclose(mine[:, column], theirs, rtol=0, atol=tolerance * scale)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_macd_signal_histogram_equal_talib_on_every_bar(seed):
    assert_matches_talib(random_walks(seed))


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_short_histories_start_at_their_first_valid_bar_like_talib_on_the_valid_tail(seed):
    close, starts = with_leading_nans(random_walks(seed), seed)
    assert_matches_talib(close)
    ours = macd_arrays(close)
    for column, start in enumerate(starts):
        tail = close[start:, column]
        for mine, theirs in zip(ours, talib.MACD(tail, 12, 26, 9) if len(tail) else ([], [], [])):
            np.testing.assert_allclose(mine[start:, column], theirs, rtol=0, atol=1e-9 * 200)
        assert np.isnan(ours[0][:start + LOOKBACK, column]).all()


def test_column_shorter_than_lookback_is_all_nan():
    close, _ = with_leading_nans(random_walks(8), 8)
    for line in macd_arrays(close):
        assert np.isnan(line[:, 2]).all() and np.isnan(line[:, 3]).all()
        assert np.isfinite(line[-1, 1]) and np.isnan(line[-2, 1])


def test_a_gap_inside_the_history_turns_later_bars_nan_as_in_talib():
    close = random_walks(18, n_rows=120, n_cols=2)
    close[60, 1] = np.nan
    assert_matches_talib(close)
    assert np.isnan(macd_arrays(close)[0][60:, 1]).all()


def test_large_prices_match_talib_to_relative_precision():
    assert_matches_talib(random_walks(9, start=250_000.0))


def test_swapped_periods_are_swapped_back_like_talib():
    close = random_walks(10, n_cols=3)
    for mine, theirs in zip(macd_arrays(close, 26, 12, 9), talib.MACD(close[:, 0], 26, 12, 9)):
        np.testing.assert_allclose(mine[:, 0], theirs, rtol=0, atol=1e-9)


def test_other_periods_match_talib():
    close = random_walks(11, n_cols=4)
    for mine, theirs in zip(macd_arrays(close, 5, 8, 3), talib.MACD(close[:, 1], 5, 8, 3)):
        np.testing.assert_allclose(mine[:, 1], theirs, rtol=0, atol=1e-9)


def test_lookback_is_the_first_bar_talib_outputs():
    first_output = int(np.argmax(np.isfinite(talib.MACD(random_walks(16, n_cols=1)[:, 0], 12, 26, 9)[0])))
    assert macd_lookback() == first_output == LOOKBACK


def test_frame_version_keeps_dates_and_symbols():
    dates = pd.bdate_range("2024-01-02", periods=60)
    close = pd.DataFrame(random_walks(12, n_rows=60, n_cols=3), index=dates, columns=["A", "B", "C"])
    result = compute_macd(close)
    for frame in result:
        assert frame.index.equals(dates) and list(frame.columns) == ["A", "B", "C"]
    np.testing.assert_allclose(result.histogram.to_numpy(), (result.macd - result.signal).to_numpy())


# --- the scan ---------------------------------------------------------------

def frame(columns, n_rows=None):
    """Wide close frame from {symbol: closes}, shorter histories padded with leading NaN."""
    n_rows = n_rows or max(len(v) for v in columns.values())
    data = {s: np.concatenate([np.full(n_rows - len(v), np.nan), np.asarray(v, float)]) for s, v in columns.items()}
    return pd.DataFrame(data, index=pd.bdate_range("2024-01-02", periods=n_rows))


def v_shape(n_down=50, n_up=20, step=1.0):
    """A decline followed by a rise: MACD climbs back through its signal.  A little seeded
    noise keeps MACD and signal from converging to an exact tie on the straight legs."""
    line = np.concatenate([100 - step * np.arange(n_down), 100 - step * n_down + step * np.arange(1, n_up + 1)])
    return line + np.random.default_rng(17).normal(0.0, 0.05, len(line))


def first_crossing(closes, sign, after=50):
    """First bar after the turn where talib's histogram changes sign in direction `sign` (+1 up, -1 down)."""
    _, _, hist = talib.MACD(np.asarray(closes, float), 12, 26, 9)
    for i in range(after, len(hist)):
        if np.isfinite(hist[i - 1]) and sign * hist[i - 1] <= 0 < sign * hist[i]:
            return i
    raise AssertionError("series has no crossing")


def test_bullish_cross_is_reported_only_on_the_bar_macd_crosses_above_signal():
    closes = v_shape()
    cross = first_crossing(closes, +1)
    rows = {k: scan_macd(frame({"X": closes[: cross + k]})).iloc[0] for k in (0, 1, 2)}
    assert not rows[0].bullish_cross and rows[0].trend == "bearish"  # the bar before: still below
    assert rows[1].bullish_cross and not rows[1].bearish_cross and rows[1].trend == "bullish"
    assert not rows[2].bullish_cross and rows[2].trend == "bullish"  # already above: no new cross


def test_bearish_cross_is_reported_only_on_the_bar_macd_crosses_below_signal():
    closes = 200 - v_shape()  # a rise then a fall
    cross = first_crossing(closes, -1)
    rows = {k: scan_macd(frame({"X": closes[: cross + k]})).iloc[0] for k in (0, 1, 2)}
    assert not rows[0].bearish_cross and rows[0].trend == "bullish"
    assert rows[1].bearish_cross and not rows[1].bullish_cross and rows[1].trend == "bearish"
    assert not rows[2].bearish_cross and rows[2].trend == "bearish"


def test_scan_row_holds_last_bar_values_and_price_change():
    closes = random_walks(13, n_rows=80, n_cols=1)[:, 0]
    row = scan_macd(frame({"X": closes})).iloc[0]
    macd_line, signal_line, hist = talib.MACD(closes, 12, 26, 9)
    assert row.symbol == "X"
    assert row.price == closes[-1]
    assert row.price_change == pytest.approx(closes[-1] - closes[-2], abs=1e-12)
    assert row.price_change_pct == pytest.approx((closes[-1] / closes[-2] - 1) * 100, rel=1e-12)
    assert row.macd == pytest.approx(macd_line[-1], abs=1e-9)
    assert row.signal == pytest.approx(signal_line[-1], abs=1e-9)
    assert row.histogram == pytest.approx(hist[-1], abs=1e-9)


def test_symbols_without_two_macd_bars_are_left_out_of_the_scan():
    closes = random_walks(14, n_rows=80, n_cols=1)[:, 0]
    close = frame({"LONG": closes, "JUST_ENOUGH": closes[-(LOOKBACK + 2):],
                   "ONE_BAR_SHORT": closes[-(LOOKBACK + 1):], "TINY": closes[-5:], "EMPTY": []})
    assert list(scan_macd(close).symbol) == ["LONG", "JUST_ENOUGH"]


def test_scan_columns_are_the_api_fields_and_serialise_to_json():
    close = pd.DataFrame(random_walks(15, n_rows=60, n_cols=5), columns=list("ABCDE"),
                         index=pd.bdate_range("2024-01-02", periods=60))
    table = scan_macd(close)
    assert tuple(table.columns) == MACD_FIELDS
    records = table.to_dict("records")
    assert len(records) == 5
    json.dumps(records)  # plain Python values only
    assert {type(r["bullish_cross"]) for r in records} == {bool}
    assert {r["trend"] for r in records} <= {"bullish", "bearish"}


@pytest.mark.parametrize("shape", [(3, 1), (0, 2), (40, 0)])
def test_scan_of_a_frame_without_enough_rows_or_any_symbol_is_empty(shape):
    close = pd.DataFrame(np.ones(shape), index=pd.bdate_range("2024-01-02", periods=shape[0]),
                         columns=[f"S{i}" for i in range(shape[1])])
    table = scan_macd(close)
    assert table.empty and tuple(table.columns) == MACD_FIELDS
