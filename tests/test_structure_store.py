"""The market-structure datasets in the store: one transaction per cycle, histories pruned, the daily
ATM IV kept, and their signals (gamma-flip crossings, sentiment changes, cycle peaks and bottoms) once."""
import datetime as dt
import sqlite3

import pytest

from tests.test_history import Clock
from workers.store import RowError, StoreReader, StoreWriter

NOW = dt.datetime(2026, 11, 25, 16, 0, tzinfo=dt.timezone.utc)
DAY = "2026-11-25"


def levels(symbol, expiry, spot, flip):
    return {"symbol": symbol, "expiry": expiry, "underlying_price": spot, "call_wall": 100.0, "put_wall": 95.0,
            "call_oi_wall": 105.0, "put_oi_wall": 95.0, "max_gex": 105.0, "flip_level": None, "gamma_flip": flip,
            "net_gex": 1e5, "pc_ratio": 0.9, "total_call_vol": 100, "total_put_vol": 90,
            "chain_fetched_at": NOW.isoformat()}


def skew(symbol, expiry, value):
    return {"symbol": symbol, "expiry": expiry, "dte": 2, "underlying_price": 100.0, "atm_strike": 100.0,
            "atm_iv": 20.0, "call_25d_iv": 18.0, "put_25d_iv": 18.0 + value, "skew_25d": value,
            "put_call_ratio": 0.9, "total_call_volume": 100, "total_put_volume": 90, "total_call_oi": 1000,
            "total_put_oi": 900, "unusual_contracts": 1, "max_vol_oi": 4.0, "implied_move": 3.0,
            "implied_move_pct": 3.0}


def mood(symbol, label, score=50.0):
    return {"symbol": symbol, "price": 600.0, "total_call_volume": 100, "total_put_volume": 90,
            "pc_volume_ratio": 0.9, "total_call_oi": 1000, "total_put_oi": 900, "pc_oi_ratio": 0.9,
            "call_gamma": 1e6, "put_gamma": 9e5, "net_gamma": 1e5, "avg_iv": 20.0, "atm_iv": 18.0, "iv_rank": None,
            "iv_history_days": 1, "sentiment_score": score, "sentiment_label": label, "data_quality": "LOW",
            "expirations": 5}


FLOW = {"symbol": "SPY", "expiry": "2026-11-27", "type": "CALL", "strike": 600.0, "volume": 500, "open_interest": 100,
        "vol_oi_ratio": 5.0, "mark": 2.0, "notional": 100_000.0, "delta": 0.5, "iv": 20.0, "underlying_price": 598.0}


def cycle(writer, spot, flip, label, skew_value=2.0, atm=18.0):
    return writer.record_structure(
        {"key_levels": [levels("SPY", "2026-11-27", spot, flip), levels("SPY", "all", spot, flip)],
         "skew_metrics": [skew("SPY", "2026-11-27", skew_value)], "oi_flows": [FLOW],
         "market_sentiment": [mood("SPY", label)]},
        {"SPY": atm}, DAY, skew_retention_days=7, sentiment_retention_days=30)


@pytest.fixture
def store(tmp_path):
    clock = Clock(NOW)
    return clock, StoreWriter(tmp_path, now=clock), StoreReader(tmp_path, now=clock)


def test_a_cycle_writes_every_dataset_and_keeps_the_histories(store):
    clock, writer, reader = store
    cycle(writer, 600.0, 601.0, "NEUTRAL")
    clock.now += dt.timedelta(minutes=5)
    cycle(writer, 600.5, 601.0, "NEUTRAL", skew_value=3.0)
    updates = reader.last_update()
    assert all(updates[d]["updated_at"] == "2026-11-25 16:05:00"
               for d in ("key_levels", "skew_metrics", "oi_flows", "market_sentiment"))
    assert reader.stored_key_levels("SPY", "all")["underlying_price"] == 600.5  # a snapshot: replaced
    assert [r["skew_25d"] for r in reader.structure_window(60)[1]] == [2.0, 3.0]  # a history
    assert [r["skew_25d"] for r in reader.latest_skew("SPY")] == [3.0]
    assert len(reader.sentiment_history("SPY", hours=1)) == 2 and len(reader.latest_sentiment()) == 1
    assert reader.oi_flows()[0]["vol_oi_ratio"] == 5.0 and len(reader.oi_flows()) == 1
    clock.now += dt.timedelta(days=8)  # past the skew retention (7 days), within the sentiment's (30)
    cycle(writer, 600.5, 601.0, "NEUTRAL", skew_value=4.0)
    assert [r["skew_25d"] for r in reader.structure_window(60 * 24 * 30)[1]] == [4.0]
    assert len(reader.sentiment_history("SPY", hours=24 * 30)) == 3


def test_the_daily_atm_iv_keeps_one_value_a_day(store):
    clock, writer, _ = store
    cycle(writer, 600.0, None, "NEUTRAL", atm=18.0)
    cycle(writer, 600.0, None, "NEUTRAL", atm=19.0)  # the day's latest replaces it
    assert writer.iv_histories(["SPY"], "2026-11-26") == {"SPY": [19.0]}
    assert writer.iv_histories(["SPY"], DAY) == {}  # before today: nothing yet


def test_a_gamma_flip_crossing_is_one_signal_per_symbol_day_and_direction(store):
    clock, writer, reader = store
    for spot in (600.0, 602.0, 603.0, 599.0, 602.5):  # flip at 601: below, above, above, below, above
        cycle(writer, spot, 601.0, "NEUTRAL")
        clock.now += dt.timedelta(minutes=5)
    signals = reader.signals(kind="gamma_flip_cross")
    assert [(s["direction"], s["values"]["underlying_price"]) for s in signals] == [("bearish", 599.0),
                                                                                  ("bullish", 602.0)]
    assert signals[1]["values"]["previous_underlying_price"] == 600.0
    cycle(writer, 600.0, None, "NEUTRAL")  # no flip: no side, no crossing
    cycle(writer, 602.0, 601.0, "NEUTRAL")
    assert len(reader.signals(kind="gamma_flip_cross")) == 2


def test_a_sentiment_label_change_is_a_signal_with_its_direction(store):
    clock, writer, reader = store
    for label in ("NEUTRAL", "NEUTRAL", "SLIGHTLY_BULLISH", "BEARISH"):
        cycle(writer, 600.0, None, label)
        clock.now += dt.timedelta(minutes=5)
    signals = reader.signals(kind="sentiment_change")
    assert [(s["direction"], s["values"]["sentiment_label"], s["values"]["previous_label"]) for s in signals] == [
        ("bearish", "BEARISH", "SLIGHTLY_BULLISH"), ("bullish", "SLIGHTLY_BULLISH", "NEUTRAL")]
    assert signals[0]["score"] == 50.0


def test_bad_rows_write_nothing(store):
    _, writer, reader = store
    with pytest.raises(RowError, match="sentiment_label"):
        writer.record_structure({"market_sentiment": [mood("SPY", "EUPHORIC")]}, {}, DAY, skew_retention_days=7,
                                sentiment_retention_days=30)
    assert reader.last_update()["market_sentiment"] is None


def cycle_row(symbol, kind, extremum=None):
    return {"symbol": symbol, "price": 10.0, "cycle_value": 1.6, "phase": 10.0, "strength": 1.6, "momentum": 1.0,
            "signal_type": kind, "signal_strength": "STRONG" if extremum else "NONE",
            "action": {"PEAK": "SELL", "BOTTOM": "BUY"}.get(kind, "HOLD"), "extremum_date": extremum,
            "extremum_price": 10.0 if extremum else None, "last_peak_date": None, "last_bottom_date": None}


def test_a_cycle_peak_or_bottom_is_recorded_once_with_its_own_date(store):
    clock, writer, reader = store
    rows = [cycle_row("AAPL", "PEAK", "2026-11-18"), cycle_row("MSFT", "BOTTOM", "2026-11-18"),
            cycle_row("NVDA", "APPROACHING_PEAK"), cycle_row("AMD", "NONE")]
    for _ in range(3):  # confirmed again by later cycles of the session: still one signal each
        writer.replace_snapshot("cycle_scanner", rows, session=dt.date(2026, 11, 25))
        clock.now += dt.timedelta(minutes=5)
    signals = reader.signals()
    assert sorted((s["kind"], s["symbol"], s["direction"]) for s in signals) == [
        ("cycle_bottom", "MSFT", "bullish"), ("cycle_peak", "AAPL", "bearish")]
    assert {s["values"]["extremum_date"] for s in signals} == {"2026-11-18"}
    assert [r["symbol"] for r in reader.cycle_scanner("sell")] == ["AAPL", "NVDA"]
    assert [r["symbol"] for r in reader.cycle_scanner("all")] == ["AAPL", "MSFT", "NVDA"]  # rows with a signal


def test_a_version_6_database_migrates_keeping_its_chains(tmp_path):
    from workers.store import schema

    path = schema.database_path(tmp_path)
    conn = sqlite3.connect(path, isolation_level=None)
    schema.migrate(conn, target=6)
    conn.execute("INSERT INTO option_chains VALUES ('SPY', '2026-11-27', 'x', 'CALL', 600, 1, 1, 1, 1, 5, 10, 0.5,"
                 " 20, 2, 600)")
    conn.close()
    StoreWriter(tmp_path).open().close()
    row = sqlite3.connect(path).execute("SELECT strike, gamma, theta, vega FROM option_chains").fetchone()
    assert row == (600.0, None, None, None)


def test_every_kind_of_signal_can_be_opted_into_by_alerts_and_reads_as_a_sentence():
    from workers.alerts import compose, settings
    from workers.store import history as H

    assert settings.SIGNAL_KINDS == H.SIGNAL_KINDS
    alert = {"signal": True, "kind": "gamma_flip_cross", "symbol": "SPY", "direction": "bullish", "score": None,
             "values": {"underlying_price": 602.0, "gamma_flip": 601.0, "previous_underlying_price": 600.0,
                        "previous_gamma_flip": 601.0}, "at": "2026-11-25T16:05:00Z"}
    title, body = compose.single(alert, "box")
    assert title == "[box] gamma flip crossing (bullish): SPY"
    assert "spot 602.00 moved above its gamma flip 601.00 (was 600.00 against 601.00)" in body
    peak = {**alert, "kind": "cycle_peak", "direction": "bearish", "values": {"extremum_date": "2026-11-18",
                                                                             "extremum_price": 10.0}}
    assert compose.single(peak, "box")[0] == "[box] cycle peak: SPY"
    mood = {**alert, "kind": "sentiment_change", "score": 61.5,
            "values": {"previous_label": "NEUTRAL", "sentiment_label": "SLIGHTLY_BULLISH"}}
    assert "NEUTRAL -> SLIGHTLY_BULLISH: score 61.50" in compose.single(mood, "box")[1]
