"""GET /api/signals, /api/symbol/<SYMBOL>, /api/cycles and ?format=csv: validated like every endpoint."""
import csv
import datetime as dt
import io

import pytest

from tests.api_support import NOW, app, control, filled_store, get, make_app, state_dir  # noqa: F401 (fixtures)
from tests.test_scanners import make_scan
from workers import technical
from workers.store import StoreReader, StoreWriter
from workers.store.rows import DATASETS


def rows_of(answer):
    return list(csv.reader(io.StringIO(answer.body.decode("utf-8"))))


@pytest.mark.parametrize("path, dataset", [
    ("/api/watchlist", "watchlist"), ("/api/whale_flows", "whale_flows"), ("/api/macd_scanner", "macd_scanner"),
    ("/api/vpb_scanner", "vpb_scanner"), ("/api/ttm_squeeze_scanner", "ttm_squeeze_scanner")])
def test_every_dataset_endpoint_exports_csv_with_the_same_rows_as_json(app, path, dataset):
    as_json = get(app, path, "limit=50").json["data"]
    answer = get(app, path, "limit=50&format=csv")
    assert answer.status == 200 and answer.headers["content-type"] == "text/csv; charset=utf-8"
    header, *lines = rows_of(answer)
    assert header == [c.name for c in DATASETS[dataset]]
    assert [line[0] for line in lines] == [row["symbol"] for row in as_json] and lines
    booleans = [c.name for c in DATASETS[dataset] if c.kind == "bool"]
    for line, row in zip(lines, as_json):
        for name in booleans:
            assert line[header.index(name)] == ("true" if row[name] else "false")
        for name, cell in zip(header, line):
            assert cell == "" if row[name] is None else True


def test_csv_keeps_the_filters_and_an_empty_listing_still_has_its_header(app):
    bullish = rows_of(get(app, "/api/macd_scanner", "filter=bullish&format=csv"))
    assert {line[0] for line in bullish[1:]} == {"AAPL", "NVDA"}
    empty = rows_of(get(app, "/api/signals", "kind=ttm_fire&symbol=ZZZZ&format=csv"))
    assert empty == [["id", "at", "kind", "symbol", "direction", "score", "values"]]


def test_a_bad_format_is_a_400_in_json_naming_the_choices(app):
    answer = get(app, "/api/watchlist", "format=xml")
    assert answer.status == 400 and answer.json == {
        "success": False, "error": "format must be one of json, csv; got 'xml'"}


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted(tmp_path, make_app):
    from api.export import to_csv

    assert to_csv(["a", "b", "c"], [{"a": "=cmd()", "b": -1.5, "c": {"x": 1}}]) == b"a,b,c\r\n'=cmd(),-1.5,\"{\"\"x\"\":1}\"\r\n"


def test_signals_serves_the_history_newest_first_with_filters(app):
    everything = get(app, "/api/signals", "limit=1000").json
    kinds = {(s["kind"], s["symbol"]) for s in everything["data"]}
    # the filled store's crosses, breakouts, fires and flows (tests/api_support.fill records no session: only the
    # whale flows are signals there)
    assert ("whale_flow", "AAPL") in kinds and everything["count"] == len(everything["data"])
    ids = [s["id"] for s in everything["data"]]
    assert ids == sorted(ids, reverse=True)
    puts = get(app, "/api/signals", "kind=whale_flow&symbol=tsla").json["data"]
    assert [(s["symbol"], s["direction"], s["values"]["type"]) for s in puts] == [("TSLA", "bearish", "PUT")]
    assert get(app, "/api/signals", "since=2999-01-01").json["data"] == []
    assert get(app, "/api/signals", "since=2020-01-01T00:00:00Z&limit=1").json["count"] == 1


@pytest.mark.parametrize("query, message", [
    ("kind=cross", "kind must be one of whale_flow, macd_cross, ttm_fire, vpb_breakout, vpb_breakdown, cycle_peak, "
                   "cycle_bottom, gamma_flip_cross, sentiment_change; got 'cross'"),
    ("symbol=a%20b", "symbol must be a ticker symbol"),
    ("since=yesterday", "since must be an ISO 8601 date or time"),
    ("since=0001-01-01", "since must be a time between 1970 and 9998"),
    ("limit=0", "limit must be an integer from 1 to 1000"),
    ("format=html", "format must be one of json, csv"),
])
def test_signals_parameters_are_checked(app, query, message):
    answer = get(app, "/api/signals", query)
    assert answer.status == 400 and message in answer.json["error"]


def test_symbol_answers_bars_with_the_indicators_the_scanners_compute(tmp_path, make_app):
    """On the simulated market's full default universe: the chart's last MACD equals the scanner's row."""
    scan, _ = make_scan(technical.MacdScan, "macd", tmp_path)
    scan.run_cycle()
    app = make_app(reader=StoreReader(tmp_path, now=lambda: NOW))
    answer = get(app, "/api/symbol/spy", "days=60")
    assert answer.status == 200 and answer.json["symbol"] == "SPY" and answer.json["count"] == 60
    data = answer.json["data"]
    assert set(data) == {"date", "open", "high", "low", "close", "volume", "macd", "macd_signal", "macd_histogram",
                         "squeeze_on", "ttm_momentum", "bb_upper", "bb_lower", "kc_upper", "kc_lower",
                         "vpb_breakout", "vpb_breakdown"}
    assert all(len(values) == 60 for values in data.values())
    assert data["date"] == sorted(data["date"])
    [row] = [r for r in StoreReader(tmp_path, now=lambda: NOW).macd(limit=1000) if r["symbol"] == "SPY"]
    assert data["macd"][-1] == row["macd"] and data["macd_histogram"][-1] == row["histogram"]  # same rounding
    assert data["close"][-1] == row["price"]
    assert all(isinstance(v, bool) for v in data["squeeze_on"] + data["vpb_breakout"])
    assert get(app, "/api/symbol/SPY").json["count"] == 120


def test_symbol_warm_up_values_are_null_not_nan(tmp_path, make_app):
    writer = StoreWriter(tmp_path, now=lambda: NOW)
    from workers.store.market import MarketCache
    import pandas as pd

    index = pd.bdate_range("2026-01-01", periods=30, name="date")
    bars = pd.DataFrame({"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 1000.0}, index=index)
    MarketCache(writer).replace_history("NEW", bars, "2026-02-12", NOW)
    data = get(make_app(reader=StoreReader(tmp_path, now=lambda: NOW)), "/api/symbol/NEW").json["data"]
    assert len(data["date"]) == 30 and data["macd_signal"][0] is None and data["squeeze_on"][0] is None
    assert data["vpb_breakout"][-2] is None and data["vpb_breakout"][-1] is False  # the 30-bar volume average


@pytest.mark.parametrize("path, query, status, message", [
    ("/api/symbol/NOPE", "", 404, "no daily bars are stored for NOPE"),
    ("/api/symbol/%3Cscript%3E", "", 400, "the symbol in /api/symbol/<symbol> must be a ticker symbol"),
    ("/api/symbol/SPY", "days=0", 400, "days must be an integer from 1 to 1000"),
    ("/api/cycles", "hours=49", 400, "hours must be an integer from 1 to 48"),
    ("/api/cycles", "worker=a;b", 400, "worker must be a worker's name"),
])
def test_symbol_and_cycles_refuse_what_they_cannot_answer_in_json(app, path, query, status, message):
    answer = get(app, path, query)
    assert answer.status == status and message in answer.json["error"] and answer.json["success"] is False


def test_cycles_serve_each_workers_durations_oldest_first(tmp_path, make_app):
    clock = [NOW - dt.timedelta(hours=7)]
    writer = StoreWriter(tmp_path, now=lambda: clock[0])
    for minutes, (worker, seconds, ok) in enumerate([("macd", 9.0, True), ("macd", 1.0, True), ("vpb", 2.0, False),
                                                     ("macd", 1.5, True)]):
        clock[0] = NOW - dt.timedelta(hours=7) + dt.timedelta(hours=2 * minutes)
        writer.record_cycle(worker, seconds, ok)
    app = make_app(reader=StoreReader(tmp_path, now=lambda: NOW))
    answer = get(app, "/api/cycles").json
    assert answer["hours"] == 6 and [(c["worker"], c["duration_s"], c["ok"]) for c in answer["data"]] == [
        ("macd", 1.0, True), ("vpb", 2.0, False), ("macd", 1.5, True)]
    assert [c["duration_s"] for c in get(app, "/api/cycles", "worker=macd&hours=48").json["data"]] == [9.0, 1.0, 1.5]
