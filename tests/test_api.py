"""The HTTP API against a real store in tmp_path and a fake control socket, through WSGI calls."""
from __future__ import annotations

import datetime as dt
import json
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import JSON_CONTENT_TYPE, WORKER_FIELDS, create_app
from api.status import FALLBACK_STALE_AFTER_S, StatusSource, stale_after
from supervisor.control_client import ControlClient
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll
from workers.store import StoreError, StoreReader, StoreWriter

NOW = dt.datetime(2026, 3, 2, 15, 0, 0, tzinfo=dt.timezone.utc)
TOKEN = "s3cret-token"


# -- helpers ----------------------------------------------------------------

@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)


def call(app, method, path, query="", headers=None) -> Answer:
    """One request through the WSGI interface, as a server would make it."""
    environ = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD=method, PATH_INFO=path, QUERY_STRING=query)
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen = {}

    def start_response(status, headerlist, exc_info=None):
        seen["status"], seen["headers"] = status, headerlist

    body = b"".join(app(environ, start_response))
    headers = {name.lower(): value for name, value in seen["headers"]}  # names are case-insensitive
    return Answer(int(seen["status"].split()[0]), headers, body)


def get(app, path, query="", **kw):
    return call(app, "GET", path, query, **kw)


def ts(delta):
    return (NOW - delta).strftime("%Y-%m-%d %H:%M:%S")


def fill(state_dir, now=NOW):
    writer = StoreWriter(state_dir, now=lambda: now)
    writer.replace_snapshot("watchlist", [
        {"symbol": "AAPL", "price": 180.0, "daily_change": 1.0, "daily_change_pct": 0.5, "volume": 5_000},
        {"symbol": "TSLA", "price": 250.0, "daily_change": -9.0, "daily_change_pct": -3.5, "volume": 9_000},
        {"symbol": "NVDA", "price": 900.0, "daily_change": 30.0, "daily_change_pct": 3.4, "volume": 1_000},
        {"symbol": "AMD", "price": 150.0, "daily_change": 2.0, "daily_change_pct": 1.3, "volume": 7_000},
    ])
    flow = dict(volume=1000, open_interest=100, vol_oi=10.0, premium=1e6, delta=0.5, expiry="2026-04-17",
                dte=46, iv=0.45, underlying_price=180.0)
    writer.record_whale_flows([
        dict(flow, symbol="AAPL", type="CALL", strike=190.0, whale_score=900.0, detected_at=ts(dt.timedelta(hours=1))),
        dict(flow, symbol="TSLA", type="PUT", strike=200.0, whale_score=1500.0, detected_at=ts(dt.timedelta(hours=5))),
        dict(flow, symbol="NVDA", type="CALL", strike=950.0, whale_score=400.0,
             detected_at=ts(dt.timedelta(minutes=10))),
        dict(flow, symbol="AMD", type="PUT", strike=140.0, whale_score=3000.0, detected_at=ts(dt.timedelta(hours=10))),
    ], retention_days=2)
    macd = dict(price=100.0, price_change=1.0, macd=0.5, signal=0.4, histogram=0.1, trend="bullish")
    writer.replace_snapshot("macd_scanner", [
        dict(macd, symbol="AAPL", price_change_pct=2.0, bullish_cross=True, bearish_cross=False),
        dict(macd, symbol="TSLA", price_change_pct=-4.0, bullish_cross=False, bearish_cross=True),
        dict(macd, symbol="NVDA", price_change_pct=5.0, bullish_cross=True, bearish_cross=False),
        dict(macd, symbol="AMD", price_change_pct=-1.0, bullish_cross=False, bearish_cross=True),
        dict(macd, symbol="MSFT", price_change_pct=0.1, bullish_cross=False, bearish_cross=False),
    ])
    vpb = dict(price=100.0, price_change=1.0, price_change_pct=1.0, volume_surge=True, current_volume=10,
               volume_ma30=5.0, highest_high_7=110.0, lowest_low_7=90.0, breakout_distance_pct=1.0,
               breakdown_distance_pct=2.0, pattern="breakout")
    writer.replace_snapshot("vpb_scanner", [
        dict(vpb, symbol="AAPL", buy_signal=True, sell_signal=False, volume_surge_pct=50.0),
        dict(vpb, symbol="TSLA", buy_signal=False, sell_signal=True, volume_surge_pct=80.0),
        dict(vpb, symbol="NVDA", buy_signal=True, sell_signal=False, volume_surge_pct=120.0),
        dict(vpb, symbol="AMD", buy_signal=False, sell_signal=False, volume_surge_pct=10.0),
    ])
    ttm = dict(squeeze_on=False, momentum_direction="up", recent_fire=True, price=100.0, bb_upper=105.0,
               bb_lower=95.0, kc_upper=106.0, kc_lower=94.0)
    writer.replace_snapshot("ttm_squeeze_scanner", [
        dict(ttm, symbol="AAPL", signal="active", squeeze_on=True, momentum=1.0, squeeze_duration=5,
             recent_fire=False, fire_date=None, fire_direction=None),
        dict(ttm, symbol="TSLA", signal="active", squeeze_on=True, momentum=3.0, squeeze_duration=5,
             recent_fire=False, fire_date=None, fire_direction=None),
        dict(ttm, symbol="NVDA", signal="active", squeeze_on=True, momentum=9.0, squeeze_duration=2,
             recent_fire=False, fire_date=None, fire_direction=None),
        dict(ttm, symbol="AMD", signal="fired", momentum=2.0, squeeze_duration=0, fire_date="2026-02-27",
             fire_direction="bullish"),
        dict(ttm, symbol="MSFT", signal="fired", momentum=-2.0, squeeze_duration=0, fire_date="2026-03-01",
             fire_direction="bearish"),
    ])
    writer.close()


def scanner_rows():
    return [worker_row(kind, interval=60.0) for kind in ("watchlist", "whale_flows", "macd", "vpb", "ttm")] \
        + [worker_row("api", interval=5.0)]


@pytest.fixture
def control(tmp_path):
    fake = FakeControl(tmp_path / "mdwd.sock", rows=scanner_rows())
    with fake:
        yield fake


@pytest.fixture(scope="module")
def filled_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("store") / "state"
    fill(path)
    return path


@pytest.fixture
def state_dir(filled_store, tmp_path):
    """A copy of the filled store (filling it once per module saves most of the test time)."""
    return Path(shutil.copytree(filled_store, tmp_path / "state"))


@pytest.fixture
def make_app(state_dir, control, tmp_path):
    """create_app over the filled store; `now` is the reader's clock, `socket` where mdwd is."""
    readers = []

    def make(token="", now=NOW + dt.timedelta(seconds=30), socket=None, cache_ttl=0.0, reader=None):
        if reader is None:
            reader = StoreReader(state_dir, now=lambda: now)
            readers.append(reader)
        status = StatusSource(ControlClient(socket or control.path, timeout=2.0), ttl=0.0)
        return create_app(reader, status, token=token, cache_ttl=cache_ttl)

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def app(make_app):
    return make_app()


# -- envelope and format ---------------------------------------------------------

def test_body_is_written_as_flask_jsonify_did(app):
    answer = get(app, "/api/watchlist")
    assert answer.status == 200
    assert answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.body.endswith(b"}\n")
    assert answer.body == (json.dumps(answer.json, sort_keys=True, separators=(",", ":")) + "\n").encode()
    assert answer.headers["content-length"] == str(len(answer.body))


def test_watchlist_envelope_and_fields(app):
    body = get(app, "/api/watchlist").json
    assert set(body) == {"success", "count", "data"}  # the old service echoed nothing here
    assert body["success"] is True and body["count"] == 4 == len(body["data"])
    assert set(body["data"][0]) == {"symbol", "price", "daily_change", "daily_change_pct", "volume", "updated_at"}
    assert body["data"][0]["updated_at"] == "2026-03-02 15:00:00"


@pytest.mark.parametrize("order_by, column", [
    (None, "daily_change_pct"), ("daily_change_pct", "daily_change_pct"), ("volume", "volume"),
    ("symbol", "symbol"), ("price", "price")])
def test_watchlist_orders_descending(app, order_by, column):
    rows = get(app, "/api/watchlist", f"order_by={order_by}" if order_by else "").json["data"]
    values = [row[column] for row in rows]
    assert values == sorted(values, reverse=True)


def test_limit_cuts_the_rows(app):
    body = get(app, "/api/watchlist", "order_by=volume&limit=2").json
    assert body["count"] == 2 and [r["symbol"] for r in body["data"]] == ["TSLA", "AMD"]


def test_whale_flows_by_score_within_default_six_hours(app):
    body = get(app, "/api/whale_flows").json
    assert body["sort_by"] == "score"
    assert [r["symbol"] for r in body["data"]] == ["TSLA", "AAPL", "NVDA"]  # AMD is 10 h old
    assert set(body["data"][0]) == {"symbol", "type", "strike", "whale_score", "volume", "open_interest", "vol_oi",
                                    "premium", "delta", "expiry", "dte", "detected_at", "iv", "underlying_price"}
    assert body["data"][0]["type"] == "PUT" and body["data"][0]["expiry"] == "2026-04-17"


def test_whale_flows_by_time_and_hours(app):
    body = get(app, "/api/whale_flows", "sort_by=time&hours=12&limit=3").json
    assert body["sort_by"] == "time" and body["count"] == 3
    assert [r["symbol"] for r in body["data"]] == ["NVDA", "AAPL", "TSLA"]
    assert [r["symbol"] for r in get(app, "/api/whale_flows", "hours=1").json["data"]] == ["NVDA"]


@pytest.mark.parametrize("filter_, symbols", [
    ("bullish", ["NVDA", "AAPL"]), ("bearish", ["TSLA", "AMD"])])
def test_macd_filters(app, filter_, symbols):
    body = get(app, "/api/macd_scanner", f"filter={filter_}").json
    assert body["filter"] == filter_ and [r["symbol"] for r in body["data"]] == symbols


def test_macd_all_is_every_row_and_booleans_are_json_booleans(app):
    body = get(app, "/api/macd_scanner").json
    assert body["filter"] == "all" and body["count"] == 5
    assert all(isinstance(r["bullish_cross"], bool) for r in body["data"])
    assert b'"bullish_cross":true' in get(app, "/api/macd_scanner", "filter=bullish").body


@pytest.mark.parametrize("filter_, symbols", [
    ("bullish", ["NVDA", "AAPL"]), ("bearish", ["TSLA"]), ("all", ["AAPL", "TSLA", "NVDA", "AMD"])])
def test_vpb_filters(app, filter_, symbols):
    body = get(app, "/api/vpb_scanner", f"filter={filter_}").json
    assert body["filter"] == filter_ and [r["symbol"] for r in body["data"]] == symbols


@pytest.mark.parametrize("filter_, symbols", [
    ("active", ["TSLA", "AAPL", "NVDA"]), ("fired", ["MSFT", "AMD"]), ("bullish", ["AMD"]),
    ("bearish", ["MSFT"])])
def test_ttm_filters(app, filter_, symbols):
    body = get(app, "/api/ttm_squeeze_scanner", f"filter={filter_}").json
    assert body["filter"] == filter_ and [r["symbol"] for r in body["data"]] == symbols


def test_stats(app):
    body = get(app, "/api/stats").json
    stats = body["stats"]
    assert body["success"] is True
    assert (stats["watchlist_count"], stats["whale_flows_count"], stats["macd_scanner_count"]) == (4, 4, 5)
    assert {u["key"] for u in stats["last_updates"]} == {
        "watchlist", "whale_flows", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner"}
    assert set(stats["last_updates"][0]) == {"key", "value", "updated_at"}


def test_last_update_has_every_dataset_with_age_and_staleness(app):
    body = get(app, "/api/last_update").json
    assert body["success"] is True
    entry = body["watchlist"]
    assert set(entry) == {"value", "updated_at", "age_s", "stale"}
    assert entry["updated_at"] == "2026-03-02 15:00:00" and entry["age_s"] == 30.0 and entry["stale"] is False
    assert set(body) == {"success", "watchlist", "whale_flows", "macd_scanner", "vpb_scanner",
                         "ttm_squeeze_scanner"}


def test_last_update_null_for_a_dataset_never_written(tmp_path, make_app):
    empty = tmp_path / "empty"
    StoreWriter(empty, now=lambda: NOW).replace_snapshot("watchlist", [])
    app = make_app(reader=StoreReader(empty, now=lambda: NOW))
    body = get(app, "/api/last_update").json
    assert body["whale_flows"] is None and body["macd_scanner"] is None and body["watchlist"]["age_s"] == 0.0


def test_stale_means_older_than_three_intervals_of_the_writer(make_app):
    app = make_app(now=NOW + dt.timedelta(seconds=181))  # the scanners' interval is 60 s
    body = get(app, "/api/last_update").json
    assert all(body[d]["stale"] for d in ("watchlist", "whale_flows", "macd_scanner"))
    assert get(make_app(now=NOW + dt.timedelta(seconds=179)), "/api/last_update").json["watchlist"]["stale"] is False


def test_stale_falls_back_to_a_fixed_limit_without_the_supervisor(make_app, tmp_path):
    gone = str(tmp_path / "no-such.sock")
    assert get(make_app(now=NOW + dt.timedelta(seconds=600), socket=gone),
               "/api/last_update").json["watchlist"]["stale"] is False
    assert get(make_app(now=NOW + dt.timedelta(seconds=FALLBACK_STALE_AFTER_S + 1), socket=gone),
               "/api/last_update").json["watchlist"]["stale"] is True


def test_stale_after_takes_the_largest_interval_of_a_kind_and_falls_back_for_the_rest():
    limits = stale_after([worker_row("w1", "watchlist", interval=10.0), worker_row("w2", "watchlist", interval=20.0),
                          worker_row("m", "macd", interval=5)])
    assert limits["watchlist"] == 60.0 and limits["macd_scanner"] == 15.0
    assert limits["whale_flows"] == FALLBACK_STALE_AFTER_S == stale_after(None)["vpb_scanner"]


def test_unknown_query_parameters_are_ignored(app):
    plain = get(app, "/api/whale_flows", "limit=2").json
    assert get(app, "/api/whale_flows", "limit=2&_=1712&foo=bar&callback=x").json == plain


def test_first_of_repeated_parameters_wins(app):
    assert get(app, "/api/watchlist", "limit=1&limit=3").json["count"] == 1


@pytest.mark.parametrize("path, query", [
    ("/api/watchlist", "limit=1"), ("/api/watchlist", "limit=1000"), ("/api/whale_flows", "hours=1"),
    ("/api/whale_flows", "hours=168&limit=1000"), ("/api/ttm_squeeze_scanner", "filter=active&limit=1")])
def test_bounds_are_inclusive(app, path, query):
    assert get(app, path, query).status == 200


# -- bad input ---------------------------------------------------------------

BAD = [
    ("/api/watchlist", "limit=0", "limit must be an integer from 1 to 1000; got '0'"),
    ("/api/watchlist", "limit=1001", "limit must be an integer from 1 to 1000; got '1001'"),
    ("/api/watchlist", "limit=-5", "limit must be an integer from 1 to 1000; got '-5'"),
    ("/api/watchlist", "limit=abc", "limit must be an integer from 1 to 1000; got 'abc'"),
    ("/api/watchlist", "limit=", "limit must be an integer from 1 to 1000; got ''"),
    ("/api/watchlist", "limit=2.5", "limit must be an integer from 1 to 1000; got '2.5'"),
    ("/api/watchlist", "limit=%205", "limit must be an integer from 1 to 1000; got ' 5'"),
    ("/api/watchlist", "limit=" + "9" * 5000, "limit must be an integer from 1 to 1000; got '9999"),
    ("/api/watchlist", "order_by=name",
     "order_by must be one of daily_change_pct, volume, symbol, price; got 'name'"),
    ("/api/watchlist", "order_by=volume%3B%20DROP%20TABLE%20watchlist",
     "order_by must be one of daily_change_pct, volume, symbol, price; got 'volume; DROP TABLE watchlist'"),
    ("/api/whale_flows", "sort_by=premium", "sort_by must be one of score, time; got 'premium'"),
    ("/api/whale_flows", "hours=0", "hours must be an integer from 1 to 168; got '0'"),
    ("/api/whale_flows", "hours=169", "hours must be an integer from 1 to 168; got '169'"),
    ("/api/whale_flows", "limit=10&hours=six", "hours must be an integer from 1 to 168; got 'six'"),
    ("/api/macd_scanner", "filter=active", "filter must be one of all, bullish, bearish; got 'active'"),
    ("/api/vpb_scanner", "filter=BULLISH", "filter must be one of all, bullish, bearish; got 'BULLISH'"),
    ("/api/ttm_squeeze_scanner", "filter=squeeze",
     "filter must be one of all, active, fired, bullish, bearish; got 'squeeze'"),
    ("/api/ttm_squeeze_scanner", "limit=%C3%A9", "limit must be an integer from 1 to 1000; got 'é'"),
]


@pytest.mark.parametrize("path, query, message", BAD)
def test_bad_parameters_answer_400_saying_what_is_allowed(app, path, query, message):
    answer = get(app, path, query)
    assert answer.status == 400 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json["success"] is False
    assert answer.json["error"].startswith(message)
    assert len(answer.json["error"]) < 200  # a huge value is not echoed whole


def test_unknown_path_is_404_json(app):
    answer = get(app, "/api/nothing")
    assert answer.status == 404 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json == {"success": False,
                           "error": "no such endpoint: /api/nothing (the endpoints are listed in API.md)"}
    assert get(app, "/api/watchlist/").status == 404


def test_wrong_method_is_405_json_naming_the_allowed_ones(app):
    answer = call(app, "DELETE", "/api/watchlist")
    assert answer.status == 405 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json["error"] == "method DELETE is not allowed on /api/watchlist; allowed: GET"
    assert call(app, "GET", "/api/workers/watchlist/restart").status == 405


def test_head_answers_like_get_without_a_body(app):
    answer = call(app, "HEAD", "/api/stats")
    assert answer.status == 200 and answer.body == b""


class _BrokenStore:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise StoreError(None, "read failed: database is locked")
        return fail


@pytest.mark.parametrize("path", ["/api/watchlist", "/api/whale_flows", "/api/macd_scanner", "/api/vpb_scanner",
                                  "/api/ttm_squeeze_scanner", "/api/stats", "/api/last_update"])
def test_store_failure_is_503_json(make_app, path):
    answer = get(make_app(reader=_BrokenStore()), path)
    assert answer.status == 503 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json == {"success": False,
                           "error": "the store cannot be read: the store: read failed: database is locked"}


def test_an_unexpected_exception_is_a_json_500_without_traceback(make_app):
    class Exploding:
        def stats(self):
            raise RuntimeError("secret internals")

    answer = get(make_app(reader=Exploding()), "/api/stats")
    assert answer.status == 500 and answer.headers["content-type"] == JSON_CONTENT_TYPE
    assert answer.json["success"] is False and "secret" not in answer.json["error"]


# -- health ----------------------------------------------------------------

def test_health_healthy(app):
    answer = get(app, "/health")
    assert answer.status == 200 and answer.json == {"status": "healthy"}
    assert answer.body == b'{"status":"healthy"}\n'


def test_health_degraded_when_a_wanted_worker_is_unhealthy(app, control):
    control.rows[1] = worker_row("whale_flows", interval=60.0, healthy=False)
    control.rows.append(worker_row("old", healthy=False, wanted=False, state="STOPPED"))
    answer = get(app, "/health")
    assert answer.status == 503 and answer.json["status"] == "degraded"
    assert answer.json["problems"] == [
        "worker whale_flows is not healthy: BACKOFF (last exit: hang, no heartbeat for 30.0s)"]


def test_health_degraded_when_a_dataset_is_stale(make_app):
    answer = get(make_app(now=NOW + dt.timedelta(seconds=200)), "/health")
    assert answer.status == 503
    assert "dataset watchlist is stale: last written 200s ago (limit 180s)" in answer.json["problems"]


def test_health_degraded_when_the_supervisor_is_unreachable(make_app, tmp_path):
    answer = get(make_app(socket=str(tmp_path / "gone.sock")), "/health")
    assert answer.status == 503 and len(answer.json["problems"]) == 1
    assert answer.json["problems"][0].startswith("supervisor unreachable: cannot reach mdwd at ")


def test_health_degraded_when_the_supervisor_answers_garbage(app, control):
    control.mode = "garbage"
    answer = get(app, "/health")
    assert answer.status == 503 and "supervisor unreachable" in answer.json["problems"][0]


def test_health_degraded_when_the_store_fails(make_app):
    answer = get(make_app(reader=_BrokenStore()), "/health")
    assert answer.status == 503
    assert answer.json["problems"] == ["store unreadable: the store: read failed: database is locked"]


# -- workers -----------------------------------------------------------------

def test_workers_lists_the_api_md_fields(app, control):
    body = get(app, "/api/workers").json
    assert body["success"] is True and body["count"] == len(control.rows)
    row = body["data"][0]
    assert tuple(sorted(row)) == tuple(sorted(WORKER_FIELDS))
    assert row["name"] == "watchlist" and row["last_exit"]["reason"] == "hang" and row["phase"] == "fetch"


def test_workers_503_when_the_supervisor_is_unreachable(make_app, tmp_path):
    answer = get(make_app(socket=str(tmp_path / "gone.sock")), "/api/workers")
    assert answer.status == 503 and answer.json["success"] is False
    assert answer.json["error"].startswith("the supervisor cannot be reached: cannot reach mdwd")


def restart(app, name="whale_flows", authorization=None):
    headers = {"Authorization": authorization} if authorization is not None else {}
    return call(app, "POST", f"/api/workers/{name}/restart", headers=headers)


def test_restart_is_forbidden_without_a_configured_token(make_app, control):
    for authorization in (None, "Bearer ", f"Bearer {TOKEN}"):
        answer = restart(make_app(token=""), authorization=authorization)
        assert answer.status == 403 and answer.json["success"] is False
        assert "no API token is configured" in answer.json["error"]
    assert restart(make_app(token=""), name="nobody").status == 403
    assert control.restarted == []


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}",
    "Bearer s3cret-tokén"])
def test_restart_needs_the_right_token(make_app, control, authorization):
    answer = restart(make_app(token=TOKEN), authorization=authorization)
    assert answer.status == 401 and answer.json["success"] is False
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert control.restarted == []


def test_restart_with_the_right_token_is_queued(make_app, control):
    answer = restart(make_app(token=TOKEN), authorization=f"bearer  {TOKEN} ")
    assert answer.status == 202
    assert answer.json == {"success": True, "name": "whale_flows", "status": "restart queued"}
    assert control.restarted == ["whale_flows"]
    assert {"cmd": "restart", "names": ["whale_flows"]} in control.requests


def test_restart_of_an_unknown_worker_is_404(make_app, control):
    answer = restart(make_app(token=TOKEN), name="nobody", authorization=f"Bearer {TOKEN}")
    assert answer.status == 404 and answer.json["error"].startswith("no worker named 'nobody'")


def test_restart_503_when_the_supervisor_is_unreachable(make_app, tmp_path):
    answer = restart(make_app(token=TOKEN, socket=str(tmp_path / "gone.sock")), authorization=f"Bearer {TOKEN}")
    assert answer.status == 503 and answer.json["success"] is False


# -- metrics -----------------------------------------------------------------

def metric_families(app):
    answer = get(app, "/metrics")
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(answer.body.decode())}


def samples(family, name=None):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
            if name is None or s.name == name}


def test_metrics_names_labels_and_values(app, control):
    control.rows[1] = worker_row("whale_flows", interval=60.0, healthy=False,
                                 provider_requests={"sim": {"ok": 5}, "http": {"timeout": 2}})
    families = metric_families(app)
    assert {"mdw_supervisor_up", "mdw_worker_up", "mdw_worker_restarts", "mdw_heartbeat_age_seconds",
            "mdw_cycle_duration_seconds", "mdw_dataset_age_seconds", "mdw_provider_requests",
            "mdw_worker_cycles", "mdw_store_up", "mdw_dataset_stale"} <= set(families)
    up = samples(families["mdw_worker_up"])
    assert up[("mdw_worker_up", (("worker", "watchlist"),))] == 1.0
    assert up[("mdw_worker_up", (("worker", "whale_flows"),))] == 0.0
    restarts = samples(families["mdw_worker_restarts"])
    assert restarts[("mdw_worker_restarts_total", (("reason", "hang"), ("worker", "macd")))] == 1.0
    assert samples(families["mdw_heartbeat_age_seconds"])[
        ("mdw_heartbeat_age_seconds", (("worker", "api"),))] == 0.4
    histogram = samples(families["mdw_cycle_duration_seconds"])
    assert histogram[("mdw_cycle_duration_seconds_bucket", (("le", "1.0"), ("worker", "vpb")))] == 30.0
    assert histogram[("mdw_cycle_duration_seconds_bucket", (("le", "+Inf"), ("worker", "vpb")))] == 43.0
    assert histogram[("mdw_cycle_duration_seconds_count", (("worker", "vpb"),))] == 43.0
    assert histogram[("mdw_cycle_duration_seconds_sum", (("worker", "vpb"),))] == 52.5
    providers = samples(families["mdw_provider_requests"])
    assert providers[("mdw_provider_requests_total", (("outcome", "ok"), ("provider", "sim")))] == 5 * 400 + 5
    assert providers[("mdw_provider_requests_total", (("outcome", "timeout"), ("provider", "http")))] == 2.0
    ages = samples(families["mdw_dataset_age_seconds"])
    assert ages[("mdw_dataset_age_seconds", (("dataset", "ttm_squeeze_scanner"),))] == 30.0


def test_metrics_without_the_supervisor_still_report_datasets(make_app, tmp_path):
    families = metric_families(make_app(socket=str(tmp_path / "gone.sock")))
    assert samples(families["mdw_supervisor_up"]) == {("mdw_supervisor_up", ()): 0.0}
    assert "mdw_worker_up" not in families and "mdw_dataset_age_seconds" in families


def test_metrics_when_the_store_fails(make_app):
    families = metric_families(make_app(reader=_BrokenStore()))
    assert samples(families["mdw_store_up"]) == {("mdw_store_up", ()): 0.0}
    assert "mdw_worker_up" in families


def test_metrics_use_a_registry_of_their_own(app):
    from prometheus_client import REGISTRY

    get(app, "/metrics")
    assert REGISTRY.get_sample_value("mdw_supervisor_up") is None


# -- caches ------------------------------------------------------------------

def test_response_cache_serves_the_same_answer_within_its_ttl(state_dir, make_app):
    app = make_app(cache_ttl=60.0)
    first = get(app, "/api/watchlist", "limit=1")
    StoreWriter(state_dir, now=lambda: NOW).replace_snapshot("watchlist", [
        {"symbol": "NEW", "price": 1.0, "daily_change": 0.0, "daily_change_pct": 99.0, "volume": 1}])
    assert get(app, "/api/watchlist", "limit=1").body == first.body
    assert get(app, "/api/watchlist", "limit=2").json["data"][0]["symbol"] == "NEW"
    assert get(app, "/api/watchlist", "limit=0").status == 400  # errors are never cached
    assert get(app, "/api/watchlist", "limit=0").status == 400


def test_status_source_asks_once_per_ttl_and_remembers_failures(control, tmp_path):
    clock = [100.0]
    source = StatusSource(ControlClient(control.path), ttl=1.0, clock=lambda: clock[0])
    assert [r["name"] for r in source.rows()][:2] == ["watchlist", "whale_flows"]
    source.rows()
    assert len(control.requests) == 1
    clock[0] += 1.0
    source.rows()
    assert len(control.requests) == 2
    gone = StatusSource(ControlClient(str(tmp_path / "gone.sock")), ttl=1.0, clock=lambda: clock[0])
    assert gone.rows_or_none() is None and gone.stale_after()["watchlist"] == FALLBACK_STALE_AFTER_S


def test_status_source_times_out_on_a_hung_supervisor(control):
    control.mode = "hang"
    source = StatusSource(ControlClient(control.path, timeout=0.5), ttl=0.0)
    started = time.monotonic()
    assert source.rows_or_none() is None
    assert time.monotonic() - started < 2.0


def test_a_slow_supervisor_holds_up_only_the_request_that_asks(control):
    source = StatusSource(ControlClient(control.path, timeout=1.0), ttl=0.0)
    before = source.rows()
    control.mode = "hang"
    asking = threading.Thread(target=source.rows_or_none)
    asking.start()
    poll(lambda: len(control.requests) == 2, 5, what="the second status request")
    started = time.monotonic()
    assert source.rows() == before  # the previous answer, at once
    assert time.monotonic() - started < 0.5
    asking.join(5)


def test_a_failure_is_remembered_for_failure_ttl(tmp_path):
    clock = [0.0]
    source = StatusSource(ControlClient(str(tmp_path / "late.sock")), ttl=1.0, failure_ttl=5.0,
                          clock=lambda: clock[0])
    assert source.rows_or_none() is None
    with FakeControl(tmp_path / "late.sock", rows=scanner_rows()):
        clock[0] = 4.9
        assert source.rows_or_none() is None  # still the remembered failure
        clock[0] = 5.0
        assert source.rows_or_none() is not None


def test_configured_staleness_limit_overrides_three_intervals():
    from api.status import stale_after

    rows = [{"kind": "watchlist", "interval": 60.0}]
    assert stale_after(rows)["watchlist"] == 180.0
    assert stale_after(rows, {"watchlist": 30})["watchlist"] == 30.0
    assert stale_after(None, {"macd_scanner": 50})["macd_scanner"] == 50.0
