"""The store: round trips per dataset, validation, atomicity, failures, migrations."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading

import numpy as np
import pandas as pd
import pytest

from workers.store import (DATASETS, SCHEMA_VERSION, RowError, SchemaTooNewError,
                           StoreError, StoreReader, StoreWriter)
from workers.store import schema

UTC = dt.timezone.utc
T0 = dt.datetime(2024, 5, 6, 14, 30, 0, tzinfo=UTC)


class Clock:
    """A settable UTC clock for the writer and the reader."""

    def __init__(self, now: dt.datetime = T0):
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += dt.timedelta(**kw)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def writer(tmp_path, clock):
    w = StoreWriter(tmp_path / "state", now=clock, busy_timeout_ms=50)
    yield w.open()
    w.close()


@pytest.fixture
def reader(tmp_path, clock, writer):
    r = StoreReader(tmp_path / "state", now=clock)
    yield r
    r.close()


def watch(symbol, price, pct, volume, change=1.0):
    return {"symbol": symbol, "price": price, "daily_change": change,
            "daily_change_pct": pct, "volume": volume}


def flow(symbol="SPY", type="CALL", strike=500.0, score=10.0, expiry="2024-05-17", **kw):
    row = {"symbol": symbol, "type": type, "strike": strike, "whale_score": score,
           "volume": 1000, "open_interest": 200, "vol_oi": 5.0, "premium": 2.5,
           "delta": 0.45, "expiry": expiry, "dte": 11, "iv": 0.2, "underlying_price": 510.0,
           "total_premium": 250000.0}
    row.update(kw)
    return row


def macd(symbol, pct, bull=False, bear=False, **kw):
    row = {"symbol": symbol, "price": 100.0, "price_change": pct, "price_change_pct": pct,
           "macd": 0.5, "signal": 0.4, "histogram": 0.1, "bullish_cross": bull,
           "bearish_cross": bear, "trend": "up" if bull else "down"}
    row.update(kw)
    return row


def vpb(symbol, surge_pct, buy=False, sell=False, **kw):
    row = {"symbol": symbol, "price": 50.0, "price_change": 1.0, "price_change_pct": 2.0,
           "buy_signal": buy, "sell_signal": sell, "volume_surge": buy or sell,
           "current_volume": 123456, "volume_ma30": 100000.5, "volume_surge_pct": surge_pct,
           "highest_high_7": 55.0, "lowest_low_7": 45.0, "breakout_distance_pct": 1.0,
           "breakdown_distance_pct": -1.0, "pattern": "breakout" if buy else "none"}
    row.update(kw)
    return row


def ttm(symbol, signal="none", duration=0, momentum=0.0, fire_date=None, direction=None):
    return {"symbol": symbol, "signal": signal, "squeeze_on": signal == "active",
            "momentum": momentum, "momentum_direction": "bullish" if momentum > 0 else "bearish",
            "squeeze_duration": duration, "recent_fire": fire_date is not None,
            "fire_date": fire_date, "fire_direction": direction, "price": 10.0,
            "bb_upper": 11.0, "bb_lower": 9.0, "kc_upper": 11.5, "kc_lower": 8.5}


def symbols(rows):
    return [r["symbol"] for r in rows]


# -- round trips ----------------------------------------------------------------


def test_watchlist_orders_descending_by_each_allowed_column(writer, reader):
    writer.replace_snapshot("watchlist", [
        watch("AAPL", 190.0, 1.5, 50_000), watch("MSFT", 410.0, -0.5, 20_000),
        watch("NVDA", 900.0, 3.0, 10_000), watch("AMD", 150.0, 0.2, 80_000)])

    assert symbols(reader.watchlist()) == ["NVDA", "AAPL", "AMD", "MSFT"]
    assert symbols(reader.watchlist(order_by="volume")) == ["AMD", "AAPL", "MSFT", "NVDA"]
    assert symbols(reader.watchlist(order_by="symbol")) == ["NVDA", "MSFT", "AMD", "AAPL"]
    assert symbols(reader.watchlist(order_by="price", limit=2)) == ["NVDA", "MSFT"]
    row = reader.watchlist(order_by="symbol", limit=1)[0]
    assert row == {"symbol": "NVDA", "price": 900.0, "daily_change": 1.0,
                   "daily_change_pct": 3.0, "volume": 10_000, "updated_at": "2024-05-06 14:30:00"}
    assert type(row["volume"]) is int and type(row["price"]) is float


def test_dataframe_with_numpy_types_and_nan_comes_back_json_ready(writer, reader):
    frame = pd.DataFrame({
        "symbol": ["A", "B"], "price": np.array([1.5, np.nan]),
        "daily_change": [np.float64(0.1), np.inf], "daily_change_pct": np.array([1.0, 2.0]),
        "volume": np.array([10, 20], dtype=np.int64)})
    writer.replace_snapshot("watchlist", frame)

    rows = reader.watchlist()
    assert rows[1] == {"symbol": "A", "price": 1.5, "daily_change": 0.1, "daily_change_pct": 1.0,
                       "volume": 10, "updated_at": "2024-05-06 14:30:00"}
    assert rows[0]["price"] is None and rows[0]["daily_change"] is None
    json.dumps(rows, allow_nan=False)  # no NaN/inf, no numpy types
    assert all(type(v) in (str, int, float, type(None)) for r in rows for v in r.values())


def test_numpy_booleans_and_nullable_pandas_dtypes_are_accepted(writer, reader):
    writer.replace_snapshot("macd_scanner", [
        macd("A", np.float32(1.5), bull=np.True_, bear=np.False_, macd=np.int64(2))])
    frame = pd.DataFrame([vpb("B", 10.0, buy=True)]).astype(
        {"buy_signal": "boolean", "current_volume": "Int64", "volume_surge_pct": "Float64"})
    frame.loc[0, "volume_surge_pct"] = pd.NA
    writer.replace_snapshot("vpb_scanner", frame)

    [m] = reader.macd()
    assert (m["bullish_cross"], m["bearish_cross"], m["macd"]) == (True, False, 2.0)
    [v] = reader.vpb()
    assert (v["buy_signal"], v["current_volume"], v["volume_surge_pct"]) == (True, 123456, None)


def test_whale_flows_sort_by_score_or_time_within_the_hours_window(writer, reader, clock):
    writer.record_whale_flows([
        flow("SPY", strike=500, score=30, detected_at=T0 - dt.timedelta(hours=5)),
        flow("QQQ", strike=400, score=50, detected_at=T0 - dt.timedelta(hours=7)),
        flow("IWM", type="put", strike=200, score=20, detected_at=T0 - dt.timedelta(hours=1)),
        flow("TSLA", strike=180, score=40, iv=float("nan"))], retention_days=2)

    assert symbols(reader.whale_flows()) == ["TSLA", "SPY", "IWM"]
    assert symbols(reader.whale_flows(sort_by="time")) == ["TSLA", "IWM", "SPY"]
    assert symbols(reader.whale_flows(hours=8, limit=2)) == ["QQQ", "TSLA"]
    assert symbols(reader.whale_flows(hours=2)) == ["TSLA", "IWM"]
    by_symbol = {r["symbol"]: r for r in reader.whale_flows(hours=24, limit=100)}
    assert by_symbol["IWM"]["type"] == "PUT"
    assert by_symbol["TSLA"]["iv"] is None
    assert by_symbol["SPY"] == {
        "symbol": "SPY", "type": "CALL", "strike": 500.0, "whale_score": 30.0, "volume": 1000,
        "open_interest": 200, "vol_oi": 5.0, "premium": 2.5, "delta": 0.45,
        "expiry": "2024-05-17", "dte": 11, "detected_at": "2024-05-06 09:30:00", "iv": 0.2,
        "underlying_price": 510.0, "total_premium": 250000.0}
    clock.advance(hours=3)
    assert symbols(reader.whale_flows(hours=2)) == []


@pytest.mark.parametrize("hours", [169, 720, 999999, 10**7, 10**30])
def test_a_whale_window_of_any_length_reaches_every_stored_flow(writer, reader, hours):
    writer.record_whale_flows([flow("OLD", detected_at=T0 - dt.timedelta(days=6)), flow("NEW")], retention_days=7)
    assert symbols(reader.whale_flows(sort_by="time", hours=hours)) == ["NEW", "OLD"]


def test_macd_filters_and_orders_as_the_old_service(writer, reader, clock):
    writer.replace_snapshot("macd_scanner", [
        macd("A", 1.0, bull=True), macd("B", 3.0, bull=True), macd("C", -2.0, bear=True),
        macd("D", -5.0, bear=True), macd("E", 0.0, scanned_at=T0 + dt.timedelta(minutes=1))])

    assert symbols(reader.macd()) == ["E", "A", "B", "C", "D"]
    assert symbols(reader.macd(filter="bullish")) == ["B", "A"]
    assert symbols(reader.macd(filter="bearish")) == ["D", "C"]
    row = reader.macd(filter="bullish", limit=1)[0]
    assert row["bullish_cross"] is True and row["bearish_cross"] is False
    assert list(row) == [c.name for c in DATASETS["macd_scanner"]]


def test_vpb_filters_by_signal_and_orders_by_volume_surge(writer, reader):
    writer.replace_snapshot("vpb_scanner", [
        vpb("A", 150.0, buy=True), vpb("B", 300.0, buy=True), vpb("C", 120.0, sell=True),
        vpb("D", 250.0, sell=True), vpb("E", 10.0)])

    assert symbols(reader.vpb()) == ["A", "B", "C", "D", "E"]
    assert symbols(reader.vpb(filter="bullish")) == ["B", "A"]
    assert symbols(reader.vpb(filter="bearish")) == ["D", "C"]
    row = reader.vpb(filter="bearish", limit=1)[0]
    assert (row["buy_signal"], row["sell_signal"], row["volume_surge"]) == (False, True, True)
    assert row["current_volume"] == 123456 and row["volume_ma30"] == 100000.5


def test_ttm_filters_and_orders_as_api_md(writer, reader):
    writer.replace_snapshot("ttm_squeeze_scanner", [
        ttm("A", "active", duration=3, momentum=0.5), ttm("B", "active", duration=7, momentum=-1),
        ttm("C", "active", duration=3, momentum=0.9),
        ttm("D", "fired", fire_date="2024-05-03", direction="bullish"),
        ttm("E", "fired", fire_date=dt.date(2024, 5, 6), direction="bearish"),
        ttm("F", "fired", fire_date=pd.Timestamp("2024-05-01"), direction="bullish"),
        ttm("G")])

    assert symbols(reader.ttm(filter="active")) == ["B", "C", "A"]
    assert symbols(reader.ttm(filter="fired")) == ["E", "D", "F"]
    assert symbols(reader.ttm(filter="bullish")) == ["D", "F"]
    assert symbols(reader.ttm(filter="bearish")) == ["E"]
    assert len(reader.ttm()) == 7
    g = reader.ttm(limit=1000)[-1]
    assert g["symbol"] == "G" and g["fire_date"] is None and g["fire_direction"] is None
    assert g["squeeze_on"] is False and g["recent_fire"] is False
    assert reader.ttm(filter="fired", limit=1)[0]["fire_date"] == "2024-05-06"


@pytest.mark.parametrize("call, message", [
    (lambda r: r.watchlist(order_by="change"), "daily_change_pct, volume, symbol, price"),
    (lambda r: r.whale_flows(sort_by="premium"), "score, time"),
    (lambda r: r.macd(filter="up"), "all, bullish, bearish"),
    (lambda r: r.vpb(filter="buy"), "all, bullish, bearish"),
    (lambda r: r.ttm(filter="on"), "all, active, fired, bullish, bearish"),
    (lambda r: r.watchlist(limit=0), "1 to 1000"),
    (lambda r: r.macd(limit=1001), "1 to 1000"),
    (lambda r: r.ttm(limit="20"), "1 to 1000"),
    (lambda r: r.vpb(limit=True), "1 to 1000"),
    (lambda r: r.whale_flows(hours=0), "an integer >= 1"),
    (lambda r: r.whale_flows(hours=2.5), "an integer >= 1"),
    (lambda r: r.last_update({"nope": 1}), "watchlist, whale_flows"),
])
def test_bad_reader_arguments_name_the_allowed_values(reader, call, message):
    with pytest.raises(ValueError, match=message):
        call(reader)


# -- stats and last_update ----------------------------------------------------


def test_stats_counts_every_dataset_and_lists_last_updates_newest_first(writer, reader, clock):
    writer.replace_snapshot("watchlist", [watch("A", 1, 1, 1), watch("B", 2, 2, 2)])
    clock.advance(seconds=5)
    writer.record_whale_flows([flow()], retention_days=1)
    writer.replace_snapshot("ttm_squeeze_scanner", [])

    stats = reader.stats()
    assert stats == {
        "watchlist_count": 2, "whale_flows_count": 1, "macd_scanner_count": 0,
        "vpb_scanner_count": 0, "ttm_squeeze_scanner_count": 0, "cycle_scanner_count": 0, "key_levels_count": 0,
        "skew_metrics_count": 0, "oi_flows_count": 0, "market_sentiment_count": 0,
        "last_updates": [
            {"key": "ttm_squeeze_scanner", "value": "2024-05-06T14:30:05+00:00",
             "updated_at": "2024-05-06 14:30:05"},
            {"key": "whale_flows", "value": "2024-05-06T14:30:05+00:00",
             "updated_at": "2024-05-06 14:30:05"},
            {"key": "watchlist", "value": "2024-05-06T14:30:00+00:00",
             "updated_at": "2024-05-06 14:30:00"}]}


def test_last_update_reports_age_and_staleness_and_null_for_never_written(writer, reader, clock):
    writer.replace_snapshot("watchlist", [watch("A", 1, 1, 1)])
    clock.advance(seconds=90)
    writer.replace_snapshot("macd_scanner", [])
    clock.advance(seconds=30)

    got = reader.last_update({"watchlist": 100, "macd_scanner": 100})
    assert got["watchlist"] == {"value": "2024-05-06T14:30:00+00:00",
                                "updated_at": "2024-05-06 14:30:00", "age_s": 120.0,
                                "stale": True}
    assert got["macd_scanner"]["age_s"] == 30.0 and got["macd_scanner"]["stale"] is False
    assert got["whale_flows"] is None and got["vpb_scanner"] is None
    assert got["ttm_squeeze_scanner"] is None
    assert reader.last_update()["watchlist"]["stale"] is False  # no threshold, never stale


# -- validation -----------------------------------------------------------------


@pytest.mark.parametrize("rows, message", [
    ([{**watch("A", 1, 1, 1), "colour": "red"}], "unknown column 'colour' in row 0"),
    ([watch("A", 1, 1, 1), {"symbol": "B", "price": 1, "daily_change": 1, "volume": 1}],
     "missing column 'daily_change_pct' in row 1"),
    (pd.DataFrame([watch("A", 1, 1, 1)]).drop(columns=["volume"]), "missing column 'volume'"),
    (pd.DataFrame([{**watch("A", 1, 1, 1), "extra": 1}]), "unknown column 'extra'"),
    ([watch("A", "1.5", 1, 1)], "row 0 column 'price' must be a number"),
    ([watch("A", 1, 1, 2.5)], "column 'volume' must be a whole number"),
    ([watch(None, 1, 1, 1)], "column 'symbol' is missing"),
    ([watch("A", 1, 1, 1), watch("A", 2, 2, 2)], "rows 0 and 1 have the same symbol 'A'"),
    ([{**watch("A", 1, 1, 1), "updated_at": dt.datetime(2024, 1, 1)}], "naive datetime"),
    ({"symbol": "A"}, "DataFrame or a list of dicts"),
])
def test_bad_rows_are_refused_before_anything_is_written(writer, reader, clock, rows, message):
    writer.replace_snapshot("watchlist", [watch("OLD", 1, 1, 1)])
    before = (reader.watchlist(), reader.stats())
    clock.advance(minutes=1)

    with pytest.raises(RowError, match=message) as info:
        writer.replace_snapshot("watchlist", rows)
    assert "watchlist" in str(info.value)
    assert (reader.watchlist(), reader.stats()) == before


def test_bad_whale_flows_and_datasets_are_refused(writer, reader):
    with pytest.raises(RowError, match="column 'type' must be one of CALL, PUT"):
        writer.record_whale_flows([flow(type="straddle")], retention_days=1)
    with pytest.raises(RowError, match="column 'expiry' must be a date"):
        writer.record_whale_flows([flow(expiry="next friday")], retention_days=1)
    with pytest.raises(ValueError, match="retention_days"):
        writer.record_whale_flows([flow()], retention_days=0)
    with pytest.raises(ValueError, match="record_whale_flows"):
        writer.replace_snapshot("whale_flows", [flow()])
    with pytest.raises(ValueError, match="watchlist, macd_scanner"):
        writer.replace_snapshot("rsi_scanner", [])
    assert reader.stats()["whale_flows_count"] == 0


def test_aware_timestamps_are_stored_as_utc_text(writer, reader):
    paris = dt.timezone(dt.timedelta(hours=2))
    writer.replace_snapshot("vpb_scanner", [
        vpb("A", 1.0, scanned_at=dt.datetime(2024, 5, 6, 18, 0, tzinfo=paris)),
        vpb("B", 1.0, scanned_at="2024-05-06T12:00:00-04:00"),
        vpb("C", 1.0, scanned_at="2024-05-06 15:00:00")])
    assert [r["scanned_at"] for r in reader.vpb()] == [
        "2024-05-06 16:00:00", "2024-05-06 16:00:00", "2024-05-06 15:00:00"]


# -- whale de-duplication and retention -----------------------------------------


def test_same_contract_seen_again_the_same_utc_day_updates_its_row(writer, reader, clock):
    first = writer.record_whale_flows([flow(score=10, volume=1000, premium=1.0, total_premium=1e5)], 1)
    clock.advance(hours=2)
    again = writer.record_whale_flows([
        flow(score=25, volume=3000, premium=1.0, total_premium=3e5),  # same contract
        flow(strike=505.0), flow(type="PUT"), flow(expiry="2024-05-24")], 1)

    assert first == (1, 0, 0) and again == (3, 1, 0)
    rows = reader.whale_flows(hours=24, limit=100)
    assert len(rows) == 4
    spy = next(r for r in rows if r["strike"] == 500.0 and r["type"] == "CALL"
               and r["expiry"] == "2024-05-17")
    assert (spy["whale_score"], spy["volume"], spy["premium"], spy["total_premium"]) == (25.0, 3000, 1.0, 3e5)
    assert spy["detected_at"] == "2024-05-06 16:30:00"


def test_same_contract_on_a_new_utc_day_is_a_new_row(writer, reader, clock):
    writer.record_whale_flows([flow(score=10)], retention_days=3)
    clock.now = dt.datetime(2024, 5, 7, 0, 5, tzinfo=UTC)
    assert writer.record_whale_flows([flow(score=12)], retention_days=3) == (1, 0, 0)
    assert [r["detected_at"] for r in reader.whale_flows(sort_by="time", hours=24)] == [
        "2024-05-07 00:05:00", "2024-05-06 14:30:00"]


def test_an_older_sighting_arriving_late_does_not_overwrite_a_newer_one(writer, reader):
    writer.record_whale_flows([flow(score=40, detected_at=T0)], 1)
    writer.record_whale_flows([flow(score=5, detected_at=T0 - dt.timedelta(hours=1))], 1)
    [row] = reader.whale_flows()
    assert (row["whale_score"], row["detected_at"]) == (40.0, "2024-05-06 14:30:00")


def test_flows_older_than_the_retention_are_deleted(writer, reader, clock):
    writer.record_whale_flows([flow("OLD")], retention_days=1)
    clock.advance(hours=20)
    writer.record_whale_flows([flow("MID")], retention_days=1)
    clock.advance(hours=5)  # OLD is now 25 h old
    assert writer.record_whale_flows([flow("NEW")], retention_days=1) == (1, 0, 1)
    assert sorted(symbols(reader.whale_flows(hours=168))) == ["MID", "NEW"]
    assert reader.stats()["whale_flows_count"] == 2


# -- atomicity --------------------------------------------------------------------


def _during_transaction(state_dir, clock, probe):
    """A writer whose connection calls probe() right after the first INSERT ran."""
    calls = []

    def trace(statement):
        if statement.startswith("INSERT") and not calls:
            calls.append(probe())

    def on_connect(conn):
        conn.set_trace_callback(trace)

    return StoreWriter(state_dir, now=clock, on_connect=on_connect), calls


def test_a_reader_during_a_write_sees_the_old_complete_snapshot(tmp_path, clock, writer, reader):
    writer.replace_snapshot("watchlist", [watch(f"S{i}", 1.0, 1.0, i) for i in range(50)])
    clock.advance(minutes=1)
    old = (reader.watchlist(limit=1000), reader.stats(), reader.last_update())
    busy, seen = _during_transaction(
        tmp_path / "state", clock,
        lambda: (reader.watchlist(limit=1000), reader.stats(), reader.last_update()))

    busy.replace_snapshot("watchlist", [watch(f"N{i}", 2.0, 2.0, i) for i in range(80)])
    busy.close()

    assert seen == [old]
    assert len(reader.watchlist(limit=1000)) == 80
    assert reader.last_update()["watchlist"]["updated_at"] == "2024-05-06 14:31:00"


def test_a_reader_during_a_whale_merge_sees_the_previous_history(tmp_path, clock, writer, reader):
    writer.record_whale_flows([flow("A", score=1), flow("B", score=2)], 1)
    old = reader.whale_flows(limit=1000)
    clock.advance(hours=25)
    busy, seen = _during_transaction(tmp_path / "state", clock,
                                     lambda: reader.whale_flows(hours=168, limit=1000))
    busy.record_whale_flows([flow("A", score=9), flow("C", score=3)], 1)
    busy.close()
    assert seen == [old]
    assert symbols(reader.whale_flows(limit=1000)) == ["A", "C"]


def test_readers_in_several_threads_only_ever_see_whole_snapshots(writer, reader):
    def snapshot(n):
        return [watch(f"S{i:03d}", float(n), 1.0, n) for i in range(200)]

    writer.replace_snapshot("watchlist", snapshot(0))
    bad, done = [], threading.Event()

    def read_loop():
        while not done.is_set():
            rows = reader.watchlist(order_by="symbol", limit=1000)
            if len(rows) != 200 or len({r["volume"] for r in rows}) != 1:
                bad.append(rows)

    threads = [threading.Thread(target=read_loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for n in range(1, 30):
            writer.replace_snapshot("watchlist", snapshot(n))
    finally:
        done.set()
        for t in threads:
            t.join()
    assert bad == []
    assert reader.watchlist(limit=1)[0]["volume"] == 29


# -- failures ---------------------------------------------------------------------


def test_locked_database_raises_store_error_and_the_next_call_works(tmp_path, writer, reader):
    writer.replace_snapshot("macd_scanner", [macd("OLD", 1.0)])
    other = sqlite3.connect(tmp_path / "state" / "market_data.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match=r"'macd_scanner'.*locked.*50 ms") as info:
            writer.replace_snapshot("macd_scanner", [macd("NEW", 1.0)])
        assert info.value.dataset == "macd_scanner"
        assert symbols(reader.macd()) == ["OLD"]  # readers are not blocked by the lock
    finally:
        other.execute("ROLLBACK")
        other.close()
    writer.replace_snapshot("macd_scanner", [macd("NEW", 1.0)])
    assert symbols(reader.macd()) == ["NEW"]


def test_disk_full_raises_store_error_keeps_old_data_and_recovers(tmp_path, clock):
    limit = {"pages": 0}

    def on_connect(conn):
        if limit["pages"]:
            conn.execute(f"PRAGMA max_page_count = {limit['pages']}")

    w = StoreWriter(tmp_path / "state", now=clock, on_connect=on_connect)
    w.replace_snapshot("vpb_scanner", [vpb("OLD", 1.0)])
    r = StoreReader(tmp_path / "state", now=clock)
    pages = sqlite3.connect(w.path).execute("PRAGMA page_count").fetchone()[0]
    limit["pages"] = pages + 2
    w.close()  # the next connection gets the low page limit
    big = [vpb(f"S{i:05d}", float(i), pattern="x" * 200) for i in range(2000)]

    with pytest.raises(StoreError, match=r"'vpb_scanner'.*disk is full"):
        w.replace_snapshot("vpb_scanner", big)
    assert symbols(r.vpb()) == ["OLD"]
    assert r.last_update()["vpb_scanner"]["updated_at"] == "2024-05-06 14:30:00"

    limit["pages"] = 0  # space is back
    assert w.replace_snapshot("vpb_scanner", big) == 2000
    assert r.stats()["vpb_scanner_count"] == 2000
    w.close()
    r.close()


def test_a_file_that_is_not_a_database_raises_store_error_until_replaced(tmp_path, clock):
    state = tmp_path / "state"
    state.mkdir()
    (state / "market_data.db").write_bytes(b"this is not sqlite " * 100)
    w = StoreWriter(state, now=clock)

    with pytest.raises(StoreError, match=r"'ttm_squeeze_scanner'.*not a database"):
        w.replace_snapshot("ttm_squeeze_scanner", [ttm("A")])
    with pytest.raises(StoreError, match="not a database"):
        StoreReader(state, now=clock)

    (state / "market_data.db").unlink()
    assert w.replace_snapshot("ttm_squeeze_scanner", [ttm("A")]) == 1
    assert symbols(StoreReader(state, now=clock).ttm()) == ["A"]
    w.close()


# -- schema and migrations --------------------------------------------------------


def test_tables_have_exactly_the_api_row_fields(writer):
    conn = sqlite3.connect(writer.path)
    for name, cols in DATASETS.items():
        assert [r[1] for r in conn.execute(f"PRAGMA table_info({name})")] == \
            [c.name for c in cols], name
    assert [r[1] for r in conn.execute("PRAGMA table_info(last_update)")] == \
        ["key", "value", "updated_at"]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_version_1_database_migrates_to_the_current_schema(tmp_path, clock):
    state = tmp_path / "state"
    path = schema.database_path(state)
    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.migrate(conn, target=1) == 1
    insert = ("INSERT INTO whale_flows (symbol, type, strike, whale_score, volume, open_interest,"
              " vol_oi, premium, delta, expiry, dte, detected_at)"
              " VALUES (?, 'CALL', 500, ?, 1, 1, 1, 1, 0.5, '2024-05-17', 11, ?)")
    conn.execute(insert, ("SPY", 10, "2024-05-06 10:00:00"))
    conn.execute(insert, ("SPY", 20, "2024-05-06 12:00:00"))  # duplicate of the same day
    conn.execute(insert, ("SPY", 30, "2024-05-05 12:00:00"))
    conn.execute("INSERT INTO watchlist VALUES ('AAPL', 1, 1, 1, 1, '2024-05-06 10:00:00')")
    conn.close()

    r = StoreReader(state, now=clock)
    rows = r.whale_flows(sort_by="time", hours=48)
    assert [(x["whale_score"], x["iv"], x["underlying_price"]) for x in rows] == [
        (20.0, None, None), (30.0, None, None)]
    assert symbols(r.watchlist()) == ["AAPL"]
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with StoreWriter(state, now=clock) as w:  # and the de-dup index is in force
        assert w.record_whale_flows([flow(score=50)], retention_days=3) == (0, 1, 0)


def test_a_version_3_whale_premium_holding_the_notional_becomes_the_mark_and_total_premium(tmp_path, clock):
    state = tmp_path / "state"
    path = schema.database_path(state)
    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.migrate(conn, target=3) == 3
    insert = ("INSERT INTO whale_flows (symbol, type, strike, whale_score, volume, open_interest, vol_oi,"
              " premium, delta, expiry, dte, detected_at, iv, underlying_price)"
              " VALUES (?, 'CALL', ?, 50, ?, 100, 5, ?, 0.4, '2024-05-17', 11, '2024-05-06 12:00:00', 0.3, 500)")
    conn.execute(insert, ("SPY", 500.0, 1000, 250000.0))   # a mark of 2.50 traded 1,000 times
    conn.execute(insert, ("QQQ", 400.0, 37, 12345.67))     # a mark that does not divide evenly
    conn.execute(insert, ("IWM", 200.0, 0, 5000.0))        # no volume: the mark cannot be known
    conn.execute(insert, ("DIA", 300.0, None, 7000.0))
    conn.execute(insert, ("XLF", 40.0, 500, None))
    conn.close()

    rows = {r["symbol"]: r for r in StoreReader(state, now=clock).whale_flows(hours=24, limit=100)}
    assert {s: (r["premium"], r["total_premium"]) for s, r in rows.items()} == {
        "SPY": (2.5, 250000.0), "QQQ": (pytest.approx(3.336668), 12345.67), "IWM": (None, 5000.0),
        "DIA": (None, 7000.0), "XLF": (None, None)}
    assert rows["SPY"]["volume"] == 1000 and rows["SPY"]["whale_score"] == 50.0  # nothing else moved
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with StoreWriter(state, now=clock) as w:  # a new sighting of SPY merges into its migrated row
        assert w.record_whale_flows([flow(strike=500.0, score=60, expiry="2024-05-17")], 3) == (0, 1, 0)


def test_a_failing_migration_step_leaves_the_old_version(tmp_path):
    conn = sqlite3.connect(tmp_path / "db", isolation_level=None)
    schema.migrate(conn, target=1)

    def broken(c):
        c.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("step failed")

    with pytest.raises(sqlite3.OperationalError):
        steps = (*schema.MIGRATIONS[:2], broken)
        schema.migrate(conn, steps=steps, target=len(steps))
    assert schema.schema_version(conn) == 1
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'half_done'").fetchall() == []
    assert "iv" not in [r[1] for r in conn.execute("PRAGMA table_info(whale_flows)")]


def test_a_database_newer_than_the_code_is_refused_clearly(tmp_path, clock, writer):
    conn = sqlite3.connect(writer.path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    writer.close()

    with pytest.raises(SchemaTooNewError, match=rf"'watchlist'.*version {SCHEMA_VERSION + 1} "
                                                rf"is newer .*\({SCHEMA_VERSION}\)"):
        writer.replace_snapshot("watchlist", [])
    with pytest.raises(StoreError, match="newer than this code"):
        StoreReader(tmp_path / "state", now=clock)
