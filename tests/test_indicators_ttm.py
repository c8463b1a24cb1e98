"""TTM Squeeze: states, durations, fires and momentum, against a plain per-symbol
implementation (statistics + numpy.polyfit) and on series built to squeeze and fire."""
import functools
import json
import statistics

import numpy as np
import pandas as pd
import pytest

import workers.indicators.ttm as ttm
from workers.indicators import TTM_FIELDS, compute_ttm, scan_ttm, ttm_arrays

LENGTH = 20


# --- a plain per-symbol implementation ----------------------------------------

def reference_bars(high, low, close, length=LENGTH, bb_mult=2.0, kc_mult=1.5):
    """Per bar of one symbol's valid history: bands (or None), squeeze on, momentum (or None)."""
    n = len(close)
    true_range = [high[0] - low[0]] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])) for i in range(1, n)
    ]
    bands, on, delta, momentum = [None] * n, [False] * n, [None] * n, [None] * n
    for i in range(length - 1, n):
        window = close[i - length + 1 : i + 1]
        sma, sd = statistics.fmean(window), statistics.pstdev(window)
        atr = statistics.fmean(true_range[i - length + 1 : i + 1])
        bands[i] = (sma + bb_mult * sd, sma - bb_mult * sd, sma + kc_mult * atr, sma - kc_mult * atr)
        on[i] = bands[i][0] < bands[i][2] and bands[i][1] > bands[i][3]
        donchian_mid = (max(high[i - length + 1 : i + 1]) + min(low[i - length + 1 : i + 1])) / 2
        delta[i] = close[i] - (donchian_mid + sma) / 2
    for i in range(2 * length - 2, n):
        slope, intercept = np.polyfit(np.arange(length), delta[i - length + 1 : i + 1], 1)
        momentum[i] = intercept + slope * (length - 1)
    return bands, on, momentum


def reference_scan(dates, bands, on, momentum, fire_lookback=5):
    """The scan row of one symbol as the module docstring defines it, or None if left out."""
    n = len(on)
    if n == 0 or momentum[-1] is None:
        return None

    def run_ending_at(i):
        count = 0
        while i >= 0 and on[i]:
            count, i = count + 1, i - 1
        return count

    fires = [i for i in range(max(1, n - fire_lookback), n)
             if on[i - 1] and not on[i] and bands[i] is not None and momentum[i] is not None]
    fire = fires[-1] if fires else None
    if on[-1]:
        signal, duration = "active", run_ending_at(n - 1)
    elif fire is not None:
        signal, duration = "fired", run_ending_at(fire - 1)
    else:
        signal, duration = "none", 0
    return {
        "signal": signal, "squeeze_on": on[-1], "momentum": momentum[-1],
        "momentum_direction": "bullish" if momentum[-1] > 0 else "bearish",
        "squeeze_duration": duration, "recent_fire": fire is not None,
        "fire_date": dates[fire].strftime("%Y-%m-%d") if fire is not None else None,
        "fire_direction": None if fire is None else "bullish" if momentum[fire] > 0 else "bearish",
        "bb_upper": bands[-1][0], "bb_lower": bands[-1][1], "kc_upper": bands[-1][2], "kc_lower": bands[-1][3],
    }


def random_frames(seed, n_rows=150, n_cols=24):
    """Random walks whose intraday range switches between calm and wide regimes, so squeezes
    come and go; column 0 also gets a squeeze lasting most of its history."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, (n_rows, n_cols)), axis=0))
    regime = np.repeat(rng.uniform(0.005, 0.03, (n_rows // 10 + 1, n_cols)), 10, axis=0)[:n_rows]
    half_range = close * regime * rng.uniform(0.5, 1.5, close.shape)
    close[30:, 0] = close[29, 0] + rng.normal(0, 0.05, n_rows - 30)  # calm closes ...
    half_range[30:, 0] = 2.0  # ... inside wide bars: a long squeeze
    high, low = close + half_range, close - half_range
    starts = rng.integers(0, n_rows - 30, n_cols)
    starts[:3] = 0
    for a in (close, high, low):
        for column, start in enumerate(starts):
            a[:start, column] = np.nan
    index = pd.bdate_range("2023-01-02", periods=n_rows)
    symbols = [f"S{i:02d}" for i in range(n_cols)]
    return {k: pd.DataFrame(v, index=index, columns=symbols)
            for k, v in dict(high=high, low=low, close=close).items()}, starts


def valid_tail(frames, column, start):
    return [frames[k].iloc[start:, column].tolist() for k in ("high", "low", "close")]


@functools.lru_cache(maxsize=None)
def random_case(seed):
    """Frames, first valid rows and the reference bars of every column (computed once per seed)."""
    frames, starts = random_frames(seed)
    references = [reference_bars(*valid_tail(frames, column, start)) for column, start in enumerate(starts)]
    return frames, starts, references


@pytest.mark.parametrize("seed", [1, 2])
def test_bands_squeeze_and_momentum_of_every_bar_match_a_plain_implementation(seed):
    frames, starts, references = random_case(seed)
    arrays = ttm_arrays(*(frames[k].to_numpy() for k in ("high", "low", "close")))
    states = set()
    for column, start in enumerate(starts):
        bands, on, momentum = references[column]
        assert np.isnan(arrays["momentum"][:start, column]).all()
        for i in range(len(on)):
            bar = start + i
            assert arrays["squeeze_on"][bar, column] == on[i], (column, bar)
            if bands[i] is None:
                assert np.isnan(arrays["bb_upper"][bar, column]) and np.isnan(arrays["kc_lower"][bar, column])
            else:
                got = [arrays[k][bar, column] for k in ("bb_upper", "bb_lower", "kc_upper", "kc_lower")]
                np.testing.assert_allclose(got, bands[i], rtol=1e-10)
            if momentum[i] is None:
                assert np.isnan(arrays["momentum"][bar, column])
            else:
                assert arrays["momentum"][bar, column] == pytest.approx(momentum[i], rel=1e-8, abs=1e-9)
            states.add(on[i])
    assert states == {True, False}


@pytest.mark.parametrize("block", [3, 7, ttm._HISTORY_BLOCK])
@pytest.mark.parametrize("seed", [1, 2])
def test_scan_states_durations_and_fires_match_a_plain_implementation(seed, block, monkeypatch):
    monkeypatch.setattr(ttm, "_HISTORY_BLOCK", block)  # squeezes older than the tail: walked back in any step
    frames, starts, references = random_case(seed)
    table = scan_ttm(frames["high"], frames["low"], frames["close"]).set_index("symbol")
    dates = frames["close"].index
    seen = set()
    for column, start in enumerate(starts):
        symbol = frames["close"].columns[column]
        expected = reference_scan(dates[start:], *references[column])
        if expected is None:
            assert symbol not in table.index
            continue
        row = table.loc[symbol]
        for field in ("signal", "squeeze_on", "momentum_direction", "squeeze_duration", "recent_fire",
                      "fire_date", "fire_direction"):
            assert row[field] == expected[field], (symbol, field)
        for field in ("momentum", "bb_upper", "bb_lower", "kc_upper", "kc_lower"):
            assert row[field] == pytest.approx(expected[field], rel=1e-8, abs=1e-9), (symbol, field)
        assert row.price == frames["close"].iloc[-1, column]
        seen.add(expected["signal"])
    assert seen == {"active", "fired", "none"}
    assert table.loc["S00", "squeeze_duration"] > 100  # the long squeeze reached far behind the tail


def test_fire_lookback_is_configurable():
    frames, _, _ = random_case(1)
    narrow = scan_ttm(frames["high"], frames["low"], frames["close"], fire_lookback=1)
    wide = scan_ttm(frames["high"], frames["low"], frames["close"], fire_lookback=30)
    assert narrow.recent_fire.sum() <= wide.recent_fire.sum()
    assert (wide.signal == "fired").sum() > (narrow.signal == "fired").sum()


# --- a squeeze built on purpose ------------------------------------------------

TREND, FLAT, BREAK = 45, 30, 20


def built_squeeze(direction):
    """45 bars trending up 1/bar with tiny ranges (closes spread widely: Bollinger far outside
    Keltner), 30 flat bars at 144 with high/low +/- 2 (closes still: squeeze on), then a
    breakout of 5/bar in `direction` with tiny ranges.

    By hand (true range 1.1 on the trend, 4 on the flat, 5.1 on the breakout):
    * bar 56, window 37..56 = 8 trend closes 137..144 + 12 flat: stdev 2.245, Bollinger
      half-width 4.49 > Keltner 1.5 x (8 x 1.1 + 12 x 4) / 20 = 4.26: off.
    * bar 57, window 38..57 = 7 trend closes + 13 flat: stdev 1.857, 3.71 < 1.5 x 2.985
      = 4.48: on, and on for every later flat bar (stdev falls, ATR rises to 4).
    * after k breakout bars the window is 20 - k closes at 144 and k jumps of 5.  k=2:
      stdev 2.437, 4.87 < 1.5 x (18 x 4 + 2 x 5.1) / 20 = 6.17: still on.  k=3: stdev
      3.905, 7.81 > 6.25: off.  So the squeeze is on for bars 57..76 (20 bars) and fires
      on bar 77, the third breakout bar.
    """
    trend = 100.0 + np.arange(TREND)
    flat = np.full(FLAT, trend[-1])
    breakout = flat[-1] + direction * 5.0 * np.arange(1, BREAK + 1)
    close = np.concatenate([trend, flat, breakout])
    half = np.concatenate([np.full(TREND, 0.1), np.full(FLAT, 2.0), np.full(BREAK, 0.1)])
    return close + half, close - half, close


FIRE_BAR = TREND + FLAT + 2  # 77
SQUEEZE_BARS = 20  # 57..76


def built_frames(n_rows):
    """UP and DOWN series plus LATE: UP started 10 bars later (leading NaN), cut to n_rows."""
    up, down = built_squeeze(+1), built_squeeze(-1)
    late = [np.concatenate([np.full(10, np.nan), a])[: len(a)] for a in up]
    index = pd.bdate_range("2024-01-01", periods=len(up[0]))
    frames = {name: pd.DataFrame({"UP": up[i], "DOWN": down[i], "LATE": late[i]}, index=index).iloc[:n_rows]
              for i, name in enumerate(("high", "low", "close"))}
    return frames, index


def scan_built(n_rows):
    frames, index = built_frames(n_rows)
    return scan_ttm(frames["high"], frames["low"], frames["close"]).set_index("symbol"), index


def test_flat_closes_inside_wide_bars_are_an_active_squeeze_that_keeps_counting():
    table, _ = scan_built(FIRE_BAR)  # up to the bar before the fire
    previous = scan_built(FIRE_BAR - 1)[0]
    for symbol in ("UP", "DOWN"):
        row = table.loc[symbol]
        assert (row.signal, row.squeeze_on, row.recent_fire, row.fire_date) == ("active", True, False, None)
        assert row.squeeze_duration == SQUEEZE_BARS == previous.loc[symbol, "squeeze_duration"] + 1
        assert row.bb_upper < row.kc_upper and row.bb_lower > row.kc_lower


def test_breakout_fires_the_squeeze_with_the_direction_of_momentum():
    before, _ = scan_built(FIRE_BAR)
    table, index = scan_built(FIRE_BAR + 1)
    for symbol, direction in (("UP", "bullish"), ("DOWN", "bearish")):
        row = table.loc[symbol]
        assert (row.signal, row.squeeze_on, row.recent_fire) == ("fired", False, True)
        assert row.fire_date == index[FIRE_BAR].strftime("%Y-%m-%d")
        assert row.fire_direction == direction and row.momentum_direction == direction
        assert row.squeeze_duration == SQUEEZE_BARS == before.loc[symbol, "squeeze_duration"]  # the one that fired
        assert row.bb_upper > row.kc_upper


def test_a_fire_stays_reported_for_five_bars_then_the_signal_is_none():
    _, index = built_frames(1)
    fire_date = index[FIRE_BAR].strftime("%Y-%m-%d")
    for bars_after in range(5):
        row = scan_built(FIRE_BAR + 1 + bars_after)[0].loc["UP"]
        assert (row.signal, row.fire_date, row.fire_direction) == ("fired", fire_date, "bullish")
    row = scan_built(FIRE_BAR + 6)[0].loc["UP"]
    assert (row.signal, row.recent_fire, row.fire_date, row.fire_direction, row.squeeze_duration) == (
        "none", False, None, None, 0)


def test_a_later_start_shifts_the_fire_by_the_missing_bars():
    table, index = scan_built(FIRE_BAR + 11)
    assert table.loc["LATE", "fire_date"] == index[FIRE_BAR + 10].strftime("%Y-%m-%d")
    assert table.loc["LATE", "signal"] == "fired"
    # same squeeze length as UP had, counted from LATE's own first bar
    assert table.loc["LATE", "squeeze_duration"] == scan_built(FIRE_BAR + 1)[0].loc["UP", "squeeze_duration"]


def test_a_fire_before_momentum_exists_is_not_reported():
    high, low, close = (a[41:41 + 39] for a in built_squeeze(+1))  # fires on its bar 36; momentum from bar 38
    index = pd.bdate_range("2024-01-01", periods=39)
    frames = [pd.DataFrame({"X": a}, index=index) for a in (high, low, close)]
    assert compute_ttm(*frames).squeeze_on["X"].iloc[35] and not compute_ttm(*frames).squeeze_on["X"].iloc[36]
    row = scan_ttm(*frames).iloc[0]
    assert (row.signal, row.recent_fire, row.fire_date, row.fire_direction) == ("none", False, None, None)


def test_symbols_without_momentum_on_the_last_bar_are_left_out():
    table, _ = scan_built(2 * LENGTH - 1 + 9)  # LATE has 38 valid bars, one short of momentum
    assert list(table.index) == ["UP", "DOWN"]


def test_scan_columns_are_the_api_fields_and_serialise_to_json():
    table, _ = scan_built(FIRE_BAR + 1)
    table = table.reset_index()
    assert tuple(table.columns) == TTM_FIELDS
    records = table.to_dict("records")
    json.dumps(records)
    assert {type(r["squeeze_duration"]) for r in records} == {int}
    assert scan_built(FIRE_BAR)[0].reset_index().to_dict("records")[0]["fire_date"] is None


def test_frame_version_keeps_dates_and_symbols():
    frames, index = built_frames(90)
    result = compute_ttm(frames["high"], frames["low"], frames["close"])
    for frame in result:
        assert frame.index.equals(index[:90]) and list(frame.columns) == ["UP", "DOWN", "LATE"]
    assert result.fired["UP"].sum() == 1 and result.fired["UP"].idxmax() == index[FIRE_BAR]


@pytest.mark.parametrize("shape", [(0, 2), (38, 2), (60, 0)])
def test_scan_of_a_frame_without_enough_rows_or_any_symbol_is_empty(shape):
    f = pd.DataFrame(np.ones(shape), index=pd.bdate_range("2024-01-02", periods=shape[0]),
                     columns=[f"S{i}" for i in range(shape[1])])
    table = scan_ttm(f, f, f)
    assert table.empty and tuple(table.columns) == TTM_FIELDS
