"""The embedded simulated market: determinism, movement, calendar, signals, speed."""
import datetime as dt
import time

import numpy as np
import pandas as pd
import pytest

from workers.providers.base import (BAR_COLUMNS, CHAIN_COLUMNS, QUOTE_COLUMNS, ProviderError,
                                    QuoteBatch)
from workers.providers.sim import (HOLIDAY_TABLE, SimProvider, holidays_by_rule, is_trading_day,
                                   weekly_expirations)
from workers.universe import DEFAULT_UNIVERSE, WATCHLIST, WHALE_SYMBOLS

UTC = dt.timezone.utc
MIDDAY = dt.datetime(2026, 3, 10, 17, 0, tzinfo=UTC)  # Tuesday 13:00 New York


def sim_at(when, seed=0, **kw):
    return SimProvider(seed=seed, clock=lambda: when, **kw)


# -- universe -------------------------------------------------------------------

def test_universe_has_no_duplicates_and_contains_the_whale_symbols():
    assert len(set(WATCHLIST)) == len(WATCHLIST) >= 140
    assert 20 <= len(WHALE_SYMBOLS) <= 30 and set(WHALE_SYMBOLS) <= set(WATCHLIST)
    assert {"SPY", "QQQ", "IWM", "DIA", "AAPL", "NVDA", "JPM", "XOM", "NEE"} <= set(WATCHLIST)
    assert DEFAULT_UNIVERSE[: len(WATCHLIST)] == WATCHLIST


# -- determinism and movement -------------------------------------------------------

def test_same_seed_and_clock_give_identical_data():
    a, b = sim_at(MIDDAY), sim_at(MIDDAY)
    pd.testing.assert_frame_equal(a.quotes(WATCHLIST[:20]), b.quotes(WATCHLIST[:20]))
    pd.testing.assert_frame_equal(a.daily_bars("AAPL"), b.daily_bars("AAPL"))
    expiry = a.expirations("SPY", 1)[0]
    pd.testing.assert_frame_equal(a.option_chain("SPY", expiry), b.option_chain("SPY", expiry))


def test_another_seed_gives_another_market():
    assert not sim_at(MIDDAY).quotes(["AAPL"]).equals(sim_at(MIDDAY, seed=1).quotes(["AAPL"]))


def test_prices_move_during_the_session_and_drift_a_little_outside_it_without_touching_the_bars():
    prices = [sim_at(MIDDAY + dt.timedelta(minutes=m)).quotes(["AAPL", "SPY"])["price"]
              for m in (0, 1, 30, 90)]
    assert all(not prices[0].equals(p) for p in prices[1:])
    close_time = dt.datetime(2026, 3, 10, 20, 0, tzinfo=UTC)  # 16:00 in New York
    close = sim_at(close_time).daily_bars("AAPL", 5)["close"].iloc[-1]
    settled = sim_at(close_time + dt.timedelta(minutes=4)).quotes(["AAPL"]).loc["AAPL"]
    assert settled["price"] == pytest.approx(close, abs=0.01) and settled["session"] == "2026-03-10"
    assert settled["session_last"] == pytest.approx(close, abs=1e-4)
    # the evening, and a Sunday: the price moves around the close, never far; the session's last stays the close
    for start, session in ((close_time + dt.timedelta(hours=2), "2026-03-10"),
                           (dt.datetime(2026, 3, 15, 17, 0, tzinfo=UTC), "2026-03-13")):
        last_close = sim_at(start).daily_bars("AAPL", 5)["close"].iloc[-1]
        quotes = [sim_at(start + dt.timedelta(minutes=m)).quotes(["AAPL"]).loc["AAPL"] for m in (0, 10, 20, 40)]
        assert len({q["price"] for q in quotes}) > 2
        assert all(abs(q["price"] / last_close - 1) < 0.005 for q in quotes)
        assert all(q["session"] == session and q["session_last"] == pytest.approx(last_close, abs=1e-4)
                   for q in quotes)
    later = sim_at(close_time + dt.timedelta(days=5)).daily_bars("AAPL", 10)
    assert later.loc["2026-03-10", "close"] == pytest.approx(close)


def test_quote_change_is_measured_against_the_previous_close():
    sim = sim_at(MIDDAY)
    quote = sim.quotes(["MSFT"]).loc["MSFT"]
    bars = sim.daily_bars("MSFT", 10)
    assert quote["price"] == pytest.approx(bars["close"].iloc[-1], abs=0.01)
    assert quote["daily_change"] == pytest.approx(bars["close"].iloc[-1] - bars["close"].iloc[-2],
                                                  abs=0.02)
    assert quote["daily_change_pct"] == pytest.approx(
        quote["daily_change"] / bars["close"].iloc[-2] * 100, abs=0.01)


def test_history_does_not_change_as_time_passes():
    before = sim_at(MIDDAY).daily_bars("NVDA", 60)
    after = sim_at(MIDDAY + dt.timedelta(days=7)).daily_bars("NVDA", 60)
    common = before.index[:-1].intersection(after.index)
    assert len(common) > 30
    pd.testing.assert_frame_equal(before.loc[common], after.loc[common])


# -- shapes -------------------------------------------------------------------------

def test_quotes_shape_and_failures_go_to_errors():
    batch = sim_at(MIDDAY, failing={"TSLA": "simulated outage"}).quotes(
        ["AAPL", "TSLA", "bad symbol!", "AAPL"])
    assert isinstance(batch, QuoteBatch)
    assert list(batch.columns) == list(QUOTE_COLUMNS) and list(batch.index) == ["AAPL"]
    assert set(batch.errors) == {"TSLA", "bad symbol!"}
    assert "simulated outage" in batch.errors["TSLA"]


def test_daily_bars_cover_a_year_of_trading_days_ascending():
    bars = sim_at(MIDDAY).daily_bars("AAPL", 365)
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert (bars.dtypes == "float64").all()
    assert bars.index.is_monotonic_increasing and bars.index.is_unique
    assert 245 <= len(bars) <= 254
    assert bars.index[-1] == pd.Timestamp("2026-03-10")
    assert all(is_trading_day(d.date()) for d in bars.index)
    assert (bars["high"] >= bars[["open", "close"]].max(axis=1)).all()
    assert (bars["low"] <= bars[["open", "close"]].min(axis=1)).all()
    assert (bars["volume"] > 0).all()


def test_intraday_bars_stop_at_the_current_minute():
    bars = sim_at(MIDDAY).intraday_bars("QQQ", minutes=5, days=2)
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert str(bars.index.tz) == "America/New_York"
    assert bars.index[0] == pd.Timestamp("2026-03-09 09:30", tz="America/New_York")
    assert bars.index[-1] == pd.Timestamp("2026-03-10 12:55", tz="America/New_York")
    assert len(bars) == 78 + 42
    with pytest.raises(ValueError):
        sim_at(MIDDAY).intraday_bars("QQQ", minutes=7)


def test_option_chain_shape_and_pricing_sanity():
    sim = sim_at(MIDDAY)
    expiry = sim.expirations("AAPL", 2)[1]
    chain = sim.option_chain("AAPL", expiry, strike_band_pct=5)
    assert list(chain.columns) == list(CHAIN_COLUMNS)
    spot = chain["underlying_price"].iloc[0]
    assert (abs(chain["strike"] / spot - 1) <= 0.05).all()
    assert set(chain["type"]) == {"CALL", "PUT"}
    assert (chain["bid"] <= chain["mark"]).all() and (chain["mark"] <= chain["ask"]).all()
    calls, puts = chain[chain["type"] == "CALL"], chain[chain["type"] == "PUT"]
    assert calls["delta"].between(0, 1).all() and puts["delta"].between(-1, 0).all()
    assert calls["delta"].is_monotonic_decreasing  # deeper in the money at lower strikes
    assert (chain["iv"] > 5).all() and (chain["iv"] < 300).all()  # percent
    assert (chain["expiry"] == expiry).all()
    assert (chain["dte"] == (expiry - MIDDAY.date()).days).all()


def test_whale_trades_show_up_now_and_then():
    sim = sim_at(MIDDAY)
    flagged = 0
    for symbol in WHALE_SYMBOLS:
        for expiry in sim.expirations(symbol, 4):
            chain = sim.option_chain(symbol, expiry)
            flagged += int((chain["volume"] > 3 * chain["open_interest"]).sum())
    assert 3 <= flagged <= 60  # some, not everywhere


# -- calendar ---------------------------------------------------------------------

@pytest.mark.parametrize("year", sorted(HOLIDAY_TABLE))
def test_exchange_rules_reproduce_the_holiday_table(year):
    special = {dt.date(2025, 1, 9)}  # national day of mourning: a one-off closure
    assert set(holidays_by_rule(year)) == set(HOLIDAY_TABLE[year]) - special


@pytest.mark.parametrize("today, expected", [
    (dt.date(2026, 3, 30), [dt.date(2026, 4, 2), dt.date(2026, 4, 10)]),   # Good Friday 2026
    (dt.date(2025, 6, 30), [dt.date(2025, 7, 3), dt.date(2025, 7, 11)]),   # July 4th 2025
    (dt.date(2026, 6, 15), [dt.date(2026, 6, 18), dt.date(2026, 6, 26)]),  # Juneteenth 2026
    (dt.date(2026, 12, 21), [dt.date(2026, 12, 24), dt.date(2026, 12, 31)]),  # Christmas 2026
    (dt.date(2027, 12, 20), [dt.date(2027, 12, 23), dt.date(2027, 12, 31)]),  # observed Xmas
    (dt.date(2026, 3, 13), [dt.date(2026, 3, 20), dt.date(2026, 3, 27)]),  # a Friday: next week
])
def test_expirations_move_to_thursday_when_friday_is_a_holiday(today, expected):
    assert weekly_expirations(today, 2) == expected
    noon = dt.datetime.combine(today, dt.time(17, 0), tzinfo=UTC)
    assert sim_at(noon).expirations("SPY", 2) == expected


# -- technical signals --------------------------------------------------------------

def _signals(sim):
    """Old-system definitions (MACD 12/26/9 cross, VPB 7/30, TTM 20/2.0/1.5), all symbols."""
    bars = {s: sim.daily_bars(s, 120) for s in WATCHLIST}
    c, h, l, v = (pd.DataFrame({s: b[k] for s, b in bars.items()})
                  for k in ("close", "high", "low", "volume"))
    macd = c.ewm(span=12, adjust=False).mean() - c.ewm(span=26, adjust=False).mean()
    hist = macd - macd.ewm(span=9, adjust=False).mean()
    surge = v.iloc[-1] > v.rolling(30).mean().iloc[-1]
    mean, std = c.rolling(20).mean(), c.rolling(20).std()
    prev = c.shift()
    tr = np.maximum(h - l, np.maximum((h - prev).abs(), (l - prev).abs()))
    atr = tr.rolling(20).mean()
    on = (2 * std < 1.5 * atr)
    fired = on.shift().iloc[-5:].fillna(False).astype(bool) & ~on.iloc[-5:]
    momentum = ((c - mean) / atr).iloc[-5:]
    return {
        "macd_bullish_cross": int(((hist.iloc[-2] <= 0) & (hist.iloc[-1] > 0)).sum()),
        "macd_bearish_cross": int(((hist.iloc[-2] >= 0) & (hist.iloc[-1] < 0)).sum()),
        "vpb_breakout": int((surge & (c.iloc[-1] > h.iloc[-8:-1].max())).sum()),
        "vpb_breakdown": int((surge & (c.iloc[-1] < l.iloc[-8:-1].min())).sum()),
        "squeeze_active": int(on.iloc[-1].sum()),
        "squeeze_fired_up": int((fired & (momentum > 0)).any().sum()),
        "squeeze_fired_down": int((fired & (momentum < 0)).any().sum()),
    }


@pytest.mark.parametrize("when", [MIDDAY, dt.datetime(2025, 7, 5, 15, 0, tzinfo=UTC),
                                  dt.datetime(2027, 1, 20, 21, 30, tzinfo=UTC)])
def test_every_signal_type_is_present_in_the_universe(when):
    counts = _signals(sim_at(when, seed=3))
    assert all(n >= 1 for n in counts.values()), counts
    assert counts["squeeze_active"] < len(WATCHLIST) / 2, counts


# -- speed --------------------------------------------------------------------------

def test_a_full_scanner_cycle_over_the_universe_takes_well_under_a_second():
    """CPU time of this process, so other work on a loaded CI machine does not count."""
    sim = sim_at(MIDDAY)
    started = time.process_time()
    sim.quotes(WATCHLIST)
    for symbol in WATCHLIST:
        sim.daily_bars(symbol, 365)
    for symbol in WHALE_SYMBOLS:
        for expiry in sim.expirations(symbol, 4):
            sim.option_chain(symbol, expiry)
    assert time.process_time() - started < 1.0


def test_failing_symbol_raises_a_provider_error_naming_it():
    sim = sim_at(MIDDAY, failing={"AMD": "upstream says no"})
    with pytest.raises(ProviderError, match="AMD.*upstream says no") as info:
        sim.daily_bars("AMD")
    assert info.value.symbol == "AMD"
