"""VPB: volume above its 30-bar average (current bar included) plus a close beyond the
7 PREVIOUS bars' range; checked by hand on a small frame and against a plain
per-symbol implementation on random data."""
import json

import numpy as np
import pandas as pd
import pytest

from workers.indicators import VPB_FIELDS, compute_vpb, scan_vpb, vpb_arrays

N_BARS = 31


def hand_frames():
    """31 bars for six symbols.

    Bars 0..29: volume 1000, close 10, high 11, low 9, except inside the previous-7
    window (bars 23..29) where bar 25's high is 12 and bar 27's low is 8.  Bar 22,
    just outside that window, has high 50 and low 1: it must not count.  The last
    bar (30) differs per symbol:
      BUY   volume 2500, close 12.6, high 20 (its own high must not count), low 12
      SELL  volume 2500, close 7.6, high 8, low 7.5
      SURGE volume 2500, close 10 (inside the range)
      QUIET volume 1000, close 12.6 (a price break on ordinary volume)
      NEW   only the last 30 bars exist (bar 0 missing): the average is still defined
      YOUNG only the last 29 bars exist: no 30-bar average, left out
    """
    symbols = ["BUY", "SELL", "SURGE", "QUIET", "NEW", "YOUNG"]
    base = {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1000.0}
    frames = {k: np.full((N_BARS, len(symbols)), v) for k, v in base.items()}
    frames["high"][25] = 12.0
    frames["low"][27] = 8.0
    frames["high"][22], frames["low"][22] = 50.0, 1.0
    last = {
        "BUY": dict(volume=2500.0, close=12.6, high=20.0, low=12.0),
        "SELL": dict(volume=2500.0, close=7.6, high=8.0, low=7.5),
        "SURGE": dict(volume=2500.0, close=10.0),
        "QUIET": dict(volume=1000.0, close=12.6, high=12.7),
        "NEW": dict(volume=2500.0, close=12.6, high=12.7),
        "YOUNG": dict(volume=2500.0, close=12.6, high=12.7),
    }
    for column, symbol in enumerate(symbols):
        for field, value in last[symbol].items():
            frames[field][-1, column] = value
    for field in frames:
        frames[field][:1, 4] = np.nan  # NEW: 30 bars
        frames[field][:2, 5] = np.nan  # YOUNG: 29 bars
    index = pd.bdate_range("2024-01-02", periods=N_BARS)
    return {k: pd.DataFrame(v, index=index, columns=symbols) for k, v in frames.items()}


def scan(frames):
    table = scan_vpb(frames["high"], frames["low"], frames["close"], frames["volume"])
    return table.set_index("symbol")


def test_volume_surge_and_close_above_previous_seven_highs_is_a_buy():
    row = scan(hand_frames()).loc["BUY"]
    # average of bars 1..30 = (29 * 1000 + 2500) / 30 = 1050: the current bar is included
    assert row.volume_ma30 == 1050 and row.current_volume == 2500
    assert row.volume_surge_pct == pytest.approx((2500 / 1050 - 1) * 100)  # 138.095...
    assert row.highest_high_7 == 12.0  # bar 25; neither bar 22 (50) nor the current bar (20)
    assert row.lowest_low_7 == 8.0  # bar 27; not bar 22 (1)
    assert row.breakout_distance_pct == pytest.approx(5.0)  # 12.6 / 12
    assert row.breakdown_distance_pct == pytest.approx(57.5)  # 12.6 / 8
    assert row.price == 12.6 and row.price_change == pytest.approx(2.6) and row.price_change_pct == pytest.approx(26.0)
    assert (row.buy_signal, row.sell_signal, row.volume_surge, row.pattern) == (True, False, True, "bullish_breakout")


def test_volume_surge_and_close_below_previous_seven_lows_is_a_sell():
    row = scan(hand_frames()).loc["SELL"]
    assert row.breakdown_distance_pct == pytest.approx(-5.0)  # 7.6 / 8
    assert row.breakout_distance_pct == pytest.approx((7.6 / 12 - 1) * 100)
    assert (row.buy_signal, row.sell_signal, row.volume_surge, row.pattern) == (False, True, True, "bearish_breakdown")


def test_volume_surge_inside_the_range_is_neither_buy_nor_sell():
    row = scan(hand_frames()).loc["SURGE"]
    assert (row.buy_signal, row.sell_signal, row.volume_surge, row.pattern) == (False, False, True, "none")


def test_price_break_on_average_volume_is_not_a_signal():
    row = scan(hand_frames()).loc["QUIET"]
    assert row.volume_ma30 == 1000 and row.volume_surge_pct == 0.0
    assert (row.buy_signal, row.sell_signal, row.volume_surge, row.pattern) == (False, False, False, "none")


def test_thirty_bars_are_enough_and_twenty_nine_are_left_out():
    table = scan(hand_frames())
    assert "YOUNG" not in table.index
    row = table.loc["NEW"]
    assert row.volume_ma30 == 1050 and row.buy_signal


def test_scan_columns_are_the_api_fields_and_serialise_to_json():
    frames = hand_frames()
    table = scan_vpb(frames["high"], frames["low"], frames["close"], frames["volume"])
    assert tuple(table.columns) == VPB_FIELDS
    records = table.to_dict("records")
    json.dumps(records)
    assert all(type(r["current_volume"]) is int and type(r["buy_signal"]) is bool for r in records)


def test_missing_last_volume_leaves_the_symbol_out():
    frames = hand_frames()
    frames["volume"].iloc[-1, 0] = np.nan
    assert "BUY" not in scan(frames).index


def test_mismatched_frames_are_rejected():
    frames = hand_frames()
    with pytest.raises(ValueError, match="same dates and symbols"):
        scan_vpb(frames["high"].iloc[:, :3], frames["low"], frames["close"], frames["volume"])


# --- against a plain per-symbol implementation --------------------------------

def reference_bars(high, low, close, volume):
    """Per bar of one symbol's valid history: (ma30, hh7, ll7, surge, buy, sell) or None."""
    out = []
    for i in range(len(close)):
        if i < 29:
            out.append(None)
            continue
        ma30 = sum(volume[i - 29 : i + 1]) / 30
        hh7, ll7 = max(high[i - 7 : i]), min(low[i - 7 : i])
        surge = volume[i] > ma30
        out.append((ma30, hh7, ll7, surge, surge and close[i] > hh7, surge and close[i] < ll7))
    return out


def random_frames(seed, n_rows=90, n_cols=40):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_rows, n_cols)), axis=0))
    high = close * (1 + rng.uniform(0, 0.02, close.shape))
    low = close * (1 - rng.uniform(0, 0.02, close.shape))
    volume = np.round(rng.lognormal(12, 0.6, close.shape))
    starts = rng.integers(0, n_rows - 25, n_cols)
    starts[:3] = 0
    for a in (close, high, low, volume):
        for column, start in enumerate(starts):
            a[:start, column] = np.nan
    index = pd.bdate_range("2023-01-02", periods=n_rows)
    symbols = [f"S{i:02d}" for i in range(n_cols)]
    return {k: pd.DataFrame(v, index=index, columns=symbols)
            for k, v in dict(high=high, low=low, close=close, volume=volume).items()}, starts


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_bar_matches_a_plain_per_symbol_implementation(seed):
    frames, starts = random_frames(seed)
    arrays = vpb_arrays(*(frames[k].to_numpy() for k in ("high", "low", "close", "volume")))
    signals = 0
    for column, start in enumerate(starts):
        h, lo, c, v = (frames[k].iloc[start:, column].tolist() for k in ("high", "low", "close", "volume"))
        for i, expected in enumerate(reference_bars(h, lo, c, v)):
            bar = start + i
            if expected is None:
                assert np.isnan(arrays["volume_ma"][bar, column])
                assert not arrays["buy_signal"][bar, column] and not arrays["sell_signal"][bar, column]
                continue
            ma30, hh7, ll7, surge, buy, sell = expected
            assert arrays["volume_ma"][bar, column] == pytest.approx(ma30, rel=1e-12)
            assert arrays["highest_high"][bar, column] == hh7 and arrays["lowest_low"][bar, column] == ll7
            assert (arrays["volume_surge"][bar, column], arrays["buy_signal"][bar, column],
                    arrays["sell_signal"][bar, column]) == (surge, buy, sell)
            signals += buy + sell
    assert signals > 20  # the data really exercises both signals


@pytest.mark.parametrize("seed", [4, 5])
def test_scan_rows_match_a_plain_per_symbol_implementation(seed):
    frames, starts = random_frames(seed)
    table = scan(frames)
    for column, start in enumerate(starts):
        symbol = frames["close"].columns[column]
        h, lo, c, v = (frames[k].iloc[start:, column].tolist() for k in ("high", "low", "close", "volume"))
        expected = reference_bars(h, lo, c, v)[-1]
        if expected is None:
            assert symbol not in table.index
            continue
        ma30, hh7, ll7, surge, buy, sell = expected
        row = table.loc[symbol]
        pattern = "bullish_breakout" if buy else "bearish_breakdown" if sell else "none"
        assert (row.buy_signal, row.sell_signal, row.volume_surge, row.pattern) == (buy, sell, surge, pattern)
        assert row.current_volume == int(v[-1]) and row.volume_ma30 == int(ma30)
        assert row.volume_surge_pct == pytest.approx((v[-1] / ma30 - 1) * 100, rel=1e-9)
        assert (row.highest_high_7, row.lowest_low_7) == (hh7, ll7)
        assert row.breakout_distance_pct == pytest.approx((c[-1] / hh7 - 1) * 100, rel=1e-9, abs=1e-12)
        assert row.breakdown_distance_pct == pytest.approx((c[-1] / ll7 - 1) * 100, rel=1e-9, abs=1e-12)
        assert row.price == c[-1] and row.price_change == pytest.approx(c[-1] - c[-2])


def test_frame_version_keeps_dates_and_symbols():
    frames, _ = random_frames(6, n_rows=40, n_cols=4)
    result = compute_vpb(frames["high"], frames["low"], frames["close"], frames["volume"])
    for frame in result:
        assert frame.index.equals(frames["close"].index) and frame.columns.equals(frames["close"].columns)
    assert result.buy_signal.dtypes.eq(bool).all()


@pytest.mark.parametrize("shape", [(0, 2), (29, 2), (40, 0)])
def test_scan_of_a_frame_without_enough_rows_or_any_symbol_is_empty(shape):
    f = pd.DataFrame(np.ones(shape), index=pd.bdate_range("2024-01-02", periods=shape[0]),
                     columns=[f"S{i}" for i in range(shape[1])])
    table = scan_vpb(f, f, f, f)
    assert table.empty and tuple(table.columns) == VPB_FIELDS
