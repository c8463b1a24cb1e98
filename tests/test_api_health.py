"""The HTTP API: health, workers and restart, metrics, and the caches in front of the store and mdwd."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import WORKER_FIELDS
from api.status import FALLBACK_STALE_AFTER_S, StatusSource, stale_after
from supervisor.shared.control_client import ControlClient
from tests.api_support import NOW, TOKEN, _BrokenStore, call, get, scanner_rows
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll
from workers.store import StoreWriter

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


def test_dataset_never_written_is_a_problem_once_its_worker_had_startup_timeout_plus_an_interval(
        make_app, tmp_path, control):
    empty = tmp_path / "empty"
    StoreWriter(empty).open().close()  # a store with its tables, and no row in any dataset
    from workers.store import StoreReader

    control.rows[:] = [worker_row("watchlist", interval=60.0, startup_timeout=30.0, supervised_s=89.0)]
    problems = get(make_app(reader=StoreReader(empty, now=lambda: NOW)), "/health").json.get("problems", [])
    assert not any("never been written" in p for p in problems)  # 89 s < 30 + 60: it still has time
    control.rows[:] = [worker_row("watchlist", interval=60.0, startup_timeout=30.0, supervised_s=91.0)]
    answer = get(make_app(reader=StoreReader(empty, now=lambda: NOW)), "/health")
    assert answer.status == 503
    assert ("dataset watchlist has never been written: its worker watchlist has been supervised for 91s "
            "(startup_timeout + interval 90s)") in answer.json["problems"]


def test_failing_worker_is_named_with_the_supervisors_reason(app, control):
    control.rows[0] = worker_row("watchlist", healthy=False, state="RUNNING",
                                 problem="failing (last cycle failed: no quote for any of 174 symbols)")
    assert ("worker watchlist is not healthy: failing (last cycle failed: no quote for any of 174 symbols)"
            in get(app, "/health").json["problems"])


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


@pytest.mark.parametrize("api_name", ["api", "http_api"])
def test_restart_all_is_queued_with_the_api_itself_last(make_app, control, api_name):
    answer = restart(make_app(token=TOKEN, api_name=api_name), name="all", authorization=f"Bearer {TOKEN}")
    assert answer.status == 202
    assert answer.json == {"success": True, "name": "all", "status": "restart queued"}
    assert {"cmd": "restart", "names": ["all"], "last": [api_name]} in control.requests
    assert control.restarted == ["all"] and control.restarted_last == [api_name]


def test_restart_of_an_unknown_worker_is_404(make_app, control):
    answer = restart(make_app(token=TOKEN), name="nobody", authorization=f"Bearer {TOKEN}")
    assert answer.status == 404 and answer.json["error"] == "no worker named 'nobody'; known: api, macd, ttm, vpb, " \
                                                            "watchlist, whale_flows"  # mdwd's words, said once


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

    rows = [{"kind": "watchlist", "interval": 60.0}]
    assert stale_after(rows)["watchlist"] == 180.0
    assert stale_after(rows, {"watchlist": 30})["watchlist"] == 30.0
    assert stale_after(None, {"macd_scanner": 50})["macd_scanner"] == 50.0


def test_a_worker_warning_is_a_health_problem_and_in_its_row(app, control):
    login = "the Schwab refresh token expires in 1 day 4 h: run mdw-schwab-login"
    control.rows[0] = worker_row("watchlist", warnings=[login])
    control.rows[1] = worker_row("whale_flows", interval=60.0, warnings=[login])
    answer = get(app, "/health")
    assert answer.status == 503 and answer.json["problems"] == [f"warning: {login}"]  # once, not per worker
    rows = {r["name"]: r for r in get(app, "/api/workers").json["data"]}
    assert rows["watchlist"]["warnings"] == [login]
