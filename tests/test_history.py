"""Signal history and cycle history (workers/store/history.py): each signal once, in the scanner's transaction."""
import datetime as dt
import sqlite3

import pytest

from tests.test_scanners import NOW, make_scan
from workers import technical, whale_flows
from workers.store import RowError, StoreReader, StoreWriter
from workers.store import history as H
from tests.clock import Clock

DAY = dt.date(2026, 11, 25)


def macd_row(symbol, bullish=False, bearish=False, price=100.0):
    return {"symbol": symbol, "price": price, "price_change": 1.0, "price_change_pct": 1.0, "macd": 0.5,
            "signal": 0.4, "histogram": 0.1, "bullish_cross": bullish, "bearish_cross": bearish,
            "trend": "bullish" if bullish else "bearish"}


def whale_row(symbol="SPY", kind="CALL", strike=600.0, score=80.0, detected_at=None):
    row = {"symbol": symbol, "type": kind, "strike": strike, "whale_score": score, "volume": 5000,
           "open_interest": 1000, "vol_oi": 5.0, "premium": 2.5, "delta": 0.5, "expiry": dt.date(2026, 11, 27),
           "dte": 2, "iv": 20.0, "underlying_price": 598.0, "total_premium": 1_250_000.0}
    if detected_at:
        row["detected_at"] = detected_at
    return row


def test_a_macd_cross_is_recorded_once_per_session_with_the_values_the_scanner_saw(tmp_path):
    clock = Clock(NOW)
    writer, reader = StoreWriter(tmp_path, now=clock), StoreReader(tmp_path, now=clock)
    writer.replace_snapshot("macd_scanner", [macd_row("AAPL", bullish=True), macd_row("MSFT")], session=DAY)
    clock.now += dt.timedelta(minutes=5)
    writer.replace_snapshot("macd_scanner", [macd_row("AAPL", bullish=True, price=101.0), macd_row("MSFT")],
                            session=DAY)
    [signal] = reader.signals()
    assert signal["kind"] == "macd_cross" and signal["symbol"] == "AAPL" and signal["direction"] == "bullish"
    assert signal["at"] == "2026-11-25T20:00:00Z" and signal["values"]["price"] == 100.0
    assert signal["values"]["bullish_cross"] is True and "symbol" not in signal["values"]
    # the same cross on the next session's bars is a new signal; so is the opposite cross the same day
    writer.replace_snapshot("macd_scanner", [macd_row("AAPL", bullish=True)], session=DAY + dt.timedelta(days=1))
    writer.replace_snapshot("macd_scanner", [macd_row("MSFT", bearish=True)], session=DAY)
    assert [(s["symbol"], s["direction"]) for s in reader.signals()] == [
        ("MSFT", "bearish"), ("AAPL", "bullish"), ("AAPL", "bullish")]


def test_vpb_and_ttm_rows_give_their_own_kinds(tmp_path):
    writer, reader = StoreWriter(tmp_path, now=lambda: NOW), StoreReader(tmp_path, now=lambda: NOW)
    vpb = {"symbol": "NVDA", "price": 1.0, "price_change": 0.0, "price_change_pct": 0.0, "buy_signal": True,
           "sell_signal": False, "volume_surge": True, "current_volume": 10, "volume_ma30": 5.0,
           "volume_surge_pct": 100.0, "highest_high_7": 1.0, "lowest_low_7": 0.5, "breakout_distance_pct": 0.0,
           "breakdown_distance_pct": 50.0, "pattern": "breakout"}
    writer.replace_snapshot("vpb_scanner", [vpb, {**vpb, "symbol": "AMD", "buy_signal": False,
                                                  "sell_signal": True, "pattern": "breakdown"}], session=DAY)
    ttm = {"symbol": "TSLA", "signal": "fired", "squeeze_on": False, "momentum": 2.0,
           "momentum_direction": "bullish", "squeeze_duration": 0, "recent_fire": True,
           "fire_date": dt.date(2026, 11, 24), "fire_direction": "bullish", "price": 1.0, "bb_upper": 1.0,
           "bb_lower": 1.0, "kc_upper": 1.0, "kc_lower": 1.0}
    writer.replace_snapshot("ttm_squeeze_scanner", [ttm, {**ttm, "symbol": "F", "recent_fire": False,
                                                          "signal": "active", "fire_date": None,
                                                          "fire_direction": None}], session=DAY)
    writer.replace_snapshot("ttm_squeeze_scanner", [ttm], session=DAY + dt.timedelta(days=1))  # same fire
    got = {(s["kind"], s["symbol"], s["direction"]) for s in reader.signals()}
    assert got == {("vpb_breakout", "NVDA", "bullish"), ("vpb_breakdown", "AMD", "bearish"),
                   ("ttm_fire", "TSLA", "bullish")}
    assert reader.signals(kind="ttm_fire")[0]["values"]["fire_date"] == "2026-11-24"


def test_a_whale_flow_is_one_signal_per_contract_and_day_with_its_score(tmp_path):
    clock = Clock(NOW)
    writer, reader = StoreWriter(tmp_path, now=clock), StoreReader(tmp_path, now=clock)
    writer.record_whale_flows([whale_row(), whale_row(kind="PUT", score=70.0)], retention_days=7)
    clock.now += dt.timedelta(minutes=5)
    writer.record_whale_flows([whale_row(score=90.0)], retention_days=7)  # seen again: the same flow
    assert sorted((s["direction"], s["score"]) for s in reader.signals()) == [("bearish", 70.0), ("bullish", 80.0)]
    clock.now += dt.timedelta(days=1)
    writer.record_whale_flows([whale_row()], retention_days=7)
    assert len(reader.signals(kind="whale_flow", symbol="SPY")) == 3


def test_bad_rows_record_no_signal_and_the_history_keeps_what_it_had(tmp_path):
    writer, reader = StoreWriter(tmp_path, now=lambda: NOW), StoreReader(tmp_path, now=lambda: NOW)
    writer.replace_snapshot("macd_scanner", [macd_row("AAPL", bullish=True)], session=DAY)
    with pytest.raises(RowError):
        writer.replace_snapshot("macd_scanner", [macd_row("MSFT", bullish=True), {"symbol": "X", "price": "x"}],
                                session=DAY)
    assert [s["symbol"] for s in reader.signals()] == ["AAPL"]


def test_signals_older_than_the_retention_are_pruned_by_their_own_writer_only(tmp_path):
    clock = Clock(NOW)
    macd = StoreWriter(tmp_path, now=clock, signal_retention_days=2)
    whale = StoreWriter(tmp_path, now=clock, signal_retention_days=30)
    macd.replace_snapshot("macd_scanner", [macd_row("AAPL", bullish=True)], session=DAY)
    whale.record_whale_flows([whale_row()], retention_days=30)
    clock.now += dt.timedelta(days=3)
    macd.replace_snapshot("macd_scanner", [macd_row("MSFT")], session=DAY + dt.timedelta(days=3))
    assert [s["kind"] for s in StoreReader(tmp_path, now=clock).signals()] == ["whale_flow"]
    with pytest.raises(ValueError, match="signal_retention_days"):
        StoreWriter(tmp_path, signal_retention_days=0)


def test_signals_filter_by_kind_symbol_since_and_follow_after_an_id(tmp_path):
    clock = Clock(NOW)
    writer, reader = StoreWriter(tmp_path, now=clock), StoreReader(tmp_path, now=clock)
    for i, symbol in enumerate(("A", "B", "C")):
        clock.now = NOW + dt.timedelta(hours=i)
        writer.replace_snapshot("macd_scanner", [macd_row(symbol, bullish=True)], session=DAY)
    assert [s["symbol"] for s in reader.signals(since=NOW + dt.timedelta(minutes=30))] == ["C", "B"]
    assert [s["symbol"] for s in reader.signals(symbol="B")] == ["B"]
    first = reader.signals(symbol="A")[0]["id"]
    assert [s["symbol"] for s in reader.signals(after_id=first)] == ["B", "C"]
    assert reader.signals(kind="whale_flow") == [] and len(reader.signals(limit=1)) == 1
    with pytest.raises(ValueError, match="kind"):
        reader.signals(kind="nope")


def test_cycles_are_kept_for_48_hours_oldest_first(tmp_path):
    clock = Clock(NOW)
    writer, reader = StoreWriter(tmp_path, now=clock), StoreReader(tmp_path, now=clock)
    writer.record_cycle("macd", 1.5, True)
    clock.now += dt.timedelta(minutes=1)
    writer.record_cycle("vpb", 2.0, False)
    assert reader.cycles() == [{"worker": "macd", "at": "2026-11-25T20:00:00Z", "duration_s": 1.5, "ok": True},
                               {"worker": "vpb", "at": "2026-11-25T20:01:00Z", "duration_s": 2.0, "ok": False}]
    assert [c["worker"] for c in reader.cycles(worker="vpb")] == ["vpb"]
    clock.now += dt.timedelta(hours=49)
    writer.record_cycle("macd", 1.0, True)
    with sqlite3.connect(reader.path) as conn:
        assert conn.execute("SELECT count(*) FROM cycles WHERE worker = 'macd'").fetchone()[0] == 1
    assert reader.cycles(hours=1) == [{"worker": "macd", "at": "2026-11-27T21:01:00Z", "duration_s": 1.0,
                                       "ok": True}]


@pytest.mark.parametrize("scan_class, kind, dataset", [
    (technical.MacdScan, "macd", "macd_scanner"), (technical.VpbScan, "vpb", "vpb_scanner"),
    (technical.TtmScan, "ttm", "ttm_squeeze_scanner")])
def test_a_technical_scan_on_the_defaults_records_exactly_the_signals_of_its_dataset(tmp_path, scan_class, kind,
                                                                                    dataset):
    """The full default universe on the simulated market: every cross, breakout or fire in the dataset is one
    signal, and a second cycle on the same bars records nothing more."""
    scan, _ = make_scan(scan_class, kind, tmp_path)
    scan.run_cycle()
    reader = StoreReader(tmp_path, now=lambda: NOW)
    rows = reader.macd(limit=1000) if kind == "macd" else reader.vpb(limit=1000) if kind == "vpb" \
        else reader.ttm(limit=1000)
    expected = {(s.kind, s.symbol, s.direction) for s in H.snapshot_signals(dataset, rows, DAY)}
    got = {(s["kind"], s["symbol"], s["direction"]) for s in reader.signals(limit=1000)}
    assert got == expected and len(rows) == len(scan.options["symbols"])
    scan.run_cycle()
    assert len(reader.signals(limit=1000)) == len(got)


def test_a_whale_scan_on_the_defaults_records_a_signal_per_flow(tmp_path):
    scan, _ = make_scan(whale_flows.WhaleFlowsScan, "whale_flows", tmp_path)
    scan.run_cycle()
    reader = StoreReader(tmp_path, now=lambda: NOW)
    flows = reader.whale_flows(limit=1000, hours=24)
    signals = reader.signals(kind="whale_flow", limit=1000)
    assert flows and len(signals) == len(flows)
    assert {(s["symbol"], s["values"]["strike"], s["score"]) for s in signals} == \
        {(f["symbol"], f["strike"], f["whale_score"]) for f in flows}


def test_every_scanner_cycle_lands_in_the_cycle_history_and_a_refusing_store_costs_only_that_row(
        tmp_path, monkeypatch):
    from workers import scanner

    class Ctx:
        name, interval = "macd", 60.0
        cycles = []

        def cycle(self, ok, duration, counts=None, error=None):
            self.cycles.append(ok)

        def idle(self, *args, **kwargs):
            pass

    class Scan:
        store, dataset = StoreWriter(tmp_path, now=lambda: NOW), "macd_scanner"

        def run_cycle(self):
            return {"fresh": 1}

    class Timetable:
        def due(self):
            return 1

    monkeypatch.setattr(scanner, "report", lambda *a, **k: None)  # it needs a real provider: not what is tested
    ctx, scan = Ctx(), Scan()
    scanner.run_once(ctx, scan, None, Timetable())
    [cycle] = StoreReader(tmp_path, now=lambda: NOW).cycles()
    assert cycle["worker"] == "macd" and cycle["ok"] is True
    monkeypatch.setattr(scan.store, "record_cycle", lambda *a: (_ for _ in ()).throw(
        scanner.StoreError("cycles", "database is locked")))
    scanner.run_once(ctx, scan, None, Timetable())
    assert ctx.cycles == [True, True]
