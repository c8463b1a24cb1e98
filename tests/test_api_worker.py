"""The API worker process: granian really serves, and beats come only after a good self-check.

In-process tests drive ApiWorker.run_once() with a recording ctx against a
server thread in the test (nothing is forked from the test runner); real-process
tests run `api.worker.run` in a child with a real WorkerContext on a pipe,
each in its own session, killed with its whole group by a finalizer. Ports are
always ephemeral.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from types import SimpleNamespace
from wsgiref.simple_server import WSGIRequestHandler, make_server

import psutil
import pytest

from api.server import SERVED_BY, self_check
from api.worker import EXIT_CANNOT_LISTEN, EXIT_SERVER_DIED, ApiWorker, settings_from
from tests.api_support import call, child, fill, http_tree, make_spec  # noqa: F401 (child: a fixture)
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll


class RecordingCtx:
    def __init__(self, spec):
        self.spec = spec
        self.name = spec.name
        self.interval = spec.interval
        self.state_dir = spec.state_dir
        self.beats, self.cycles = [], []

    def beat(self, phase, item=None):
        self.beats.append((phase, item))

    def cycle(self, ok, duration, counts=None, error=None):
        self.cycles.append((ok, error))


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def worker(tmp_path):
    """An ApiWorker whose `server` is the worker's own app on a wsgiref thread in this process."""
    servers = []

    def make(**api):
        fill(tmp_path / "state")
        w = ApiWorker(RecordingCtx(make_spec(tmp_path / "state", **api)), environ={})
        w.open_store()
        httpd = make_server("127.0.0.1", 0, w.make_app(), handler_class=_Quiet)
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        w.server = SimpleNamespace(host="127.0.0.1", port=httpd.server_port, alive=True, pid=1,
                                   describe_exit=lambda: "exit code 1", pids=[os.getpid()])
        w.server.serving_pids = lambda: w.server.pids
        return w

    yield make
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def fetch(url, timeout=5.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


# -- in process ----------------------------------------------------------------

def test_a_good_self_check_beats_and_reports_a_good_cycle(worker):
    w = worker()
    assert w.run_once() is True
    assert w.ctx.beats == [("self-check", "/api/last_update")]
    assert w.ctx.cycles == [(True, None)]


def test_every_answer_names_the_process_that_served_it(worker):
    w = worker()
    for path in ("/api/last_update", "/api/nothing-here", "/health"):
        request = urllib.request.Request(f"http://127.0.0.1:{w.server.port}{path}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                headers = response.headers
        except urllib.error.HTTPError as error:
            headers = error.headers
        assert headers[SERVED_BY] == str(os.getpid()), path


def test_restarting_all_over_the_api_names_this_worker_to_restart_last(worker, tmp_path):
    w = worker(token="s3cret")
    w.ctx.name = "http_api"  # the worker's name in the supervisor's config, whatever it is
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("http_api", kind="api")]) as control:
        answer = call(w.make_app(), "POST", "/api/workers/all/restart", headers={"Authorization": "Bearer s3cret"})
    assert answer.status == 202
    assert {"cmd": "restart", "names": ["all"], "last": ["http_api"]} in control.requests


def test_a_serving_process_that_never_answers_fails_the_check(worker):
    w = worker()
    w.server.pids = [os.getpid(), 2**22 + 1]  # the second one never answers (no such process)
    assert w.run_once() is False
    assert w.ctx.beats == []
    ok, error = w.ctx.cycles[-1]
    assert ok is False and error == f"serving process {2**22 + 1} did not answer GET /api/last_update (the others did)"


def test_an_answer_without_the_process_header_does_not_count_for_a_process():
    def anonymous_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b'{"success": true}']

    httpd = make_server("127.0.0.1", 0, anonymous_app, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        assert self_check("127.0.0.1", httpd.server_port, "/api/last_update", 2.0) is None  # no pids: any answer
        problem = self_check("127.0.0.1", httpd.server_port, "/api/last_update", 2.0, [os.getpid()])
        assert problem == f"serving process {os.getpid()} did not answer GET /api/last_update (the others did)"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def test_a_server_that_does_not_answer_gets_no_beat(worker):
    w = worker()
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        w.server.port = listener.getsockname()[1]
        assert w.run_once() is False
    assert w.ctx.beats == []
    ok, error = w.ctx.cycles[-1]
    assert ok is False and "GET /api/last_update" in error and "timed out" in error


@pytest.mark.parametrize("status, body", [("503 Service Unavailable", b'{"success": false}'),
                                          ("200 OK", b'{"success": false}'), ("200 OK", b"<html>")])
def test_a_server_that_answers_badly_gets_no_beat(worker, status, body):
    w = worker()

    def bad_app(environ, start_response):
        start_response(status, [("Content-Type", "application/json")])
        return [body]

    httpd = make_server("127.0.0.1", 0, bad_app, handler_class=_Quiet)
    thread = threading.Thread(target=httpd.handle_request, daemon=True)
    thread.start()
    try:
        w.server.port = httpd.server_port
        assert w.run_once() is False
    finally:
        thread.join(5)
        httpd.server_close()
    assert w.ctx.beats == []
    ok, error = w.ctx.cycles[-1]
    assert ok is False and error.startswith("GET /api/last_update")


def test_a_dead_server_ends_the_loop_with_its_exit_code(worker):
    w = worker()
    w.server.alive = False
    assert w.serve_forever() == EXIT_SERVER_DIED
    assert w.ctx.beats == []


def test_hung_server_self_check_gives_up_within_its_timeout():
    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        started = time.monotonic()
        problem = self_check("127.0.0.1", listener.getsockname()[1], "/api/last_update", timeout=0.3)
    assert problem is not None and "timed out" in problem
    assert time.monotonic() - started < 2.0


def test_token_from_the_environment_overrides_the_config(tmp_path):
    ctx = RecordingCtx(make_spec(tmp_path, token="from-config"))
    assert settings_from(ctx, environ={})["token"] == "from-config"
    assert settings_from(ctx, environ={"MDW_API_TOKEN": ""})["token"] == "from-config"
    assert settings_from(ctx, environ={"MDW_API_TOKEN": "from-env"})["token"] == "from-env"


def test_defaults_apply_to_a_missing_section(tmp_path):
    spec = make_spec(tmp_path)
    spec.sections = {}
    assert settings_from(RecordingCtx(spec), environ={}) == {
        "host": "127.0.0.1", "port": 8000, "token": "", "threads": 4, "self_check_interval": 5.0, "processes": 2,
        "cors_origins": ["*"]}


def test_the_served_app_applies_the_configured_cors_origins(tmp_path):
    fill(tmp_path / "state")
    origins = {None: "*", ("https://ops.example.com",): "https://ops.example.com"}
    for configured, allowed in origins.items():
        spec = make_spec(tmp_path / "state", **({} if configured is None else {"cors_origins": list(configured)}))
        app = ApiWorker(RecordingCtx(spec), environ={}).make_app()
        answer = call(app, "GET", "/api/stats", headers={"Origin": "https://ops.example.com"})
        assert answer.headers["access-control-allow-origin"] == allowed


@pytest.mark.parametrize("check, interval, timeout, period", [
    (5.0, 60.0, 30.0, 5.0), (5.0, 2.0, 30.0, 2.0), (20.0, 60.0, 30.0, 10.0)])
def test_the_self_check_comes_often_enough_for_the_supervisor(tmp_path, check, interval, timeout, period):
    ctx = RecordingCtx(make_spec(tmp_path, interval=interval, heartbeat_timeout=timeout, self_check_interval=check))
    assert ApiWorker(ctx, environ={}).period == period


# -- real processes ------------------------------------------------------------

def test_the_worker_process_serves_and_beats_after_self_checks(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(self_check_interval=0.2)
        port = c.wait_port()
        # under load the first check may come before every serving process accepts: it fails, the next pass
        def good_cycles():
            return [m for m in c.messages if m["t"] == "cycle" and m["ok"]]
        poll(lambda: len(c.beats()) >= 3 and len(good_cycles()) >= 2, 15,
             what=lambda: f"3 beats and 2 good self-checks; messages {c.messages}, stderr:\n{c.stderr()}")
        assert {(b["phase"], b["item"]) for b in c.beats()} == {("self-check", "/api/last_update")}
        cycles = [m for m in c.messages if m["t"] == "cycle"]
        assert cycles[-1]["ok"] and sum(not m["ok"] for m in cycles) <= 1
        status, _, body = fetch(f"http://127.0.0.1:{port}/api/workers")
        assert status == 200 and json.loads(body)["data"][0]["name"] == "api"
        assert c.proc.poll() is None


def test_a_port_in_use_makes_the_worker_exit_nonzero_saying_why(child):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        c = child(port=port)
        assert c.proc.wait(15) == EXIT_CANNOT_LISTEN
    assert f"cannot listen on 127.0.0.1:{port}" in c.stderr()
    assert "in use" in c.stderr()
    assert c.beats() == []


def test_a_host_that_does_not_resolve_exits_nonzero_saying_why(child):
    c = child(host="no-such-host.invalid")
    assert c.proc.wait(15) == EXIT_CANNOT_LISTEN
    assert "cannot listen on no-such-host.invalid:0: Name or service not known" in c.stderr()


def test_serving_processes_share_the_port_in_the_workers_group_and_their_death_restarts_the_api(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(self_check_interval=0.2, processes=3)
        port = c.wait_port()
        manager, serving = http_tree(c, 3)
        group = os.getpgid(c.proc.pid)
        assert {os.getpgid(p.pid) for p in [manager, *serving]} == {group}  # the supervisor's kill reaches them
        for p in serving:
            ports = {conn.laddr.port for conn in p.net_connections("tcp") if conn.status == psutil.CONN_LISTEN}
            assert ports == {port}
        for _ in range(20):
            assert fetch(f"http://127.0.0.1:{port}/api/last_update")[0] == 200
        serving[0].kill()
        assert c.proc.wait(15) == EXIT_SERVER_DIED
        assert "has ended (exit code 1); exiting so the supervisor restarts the API" in c.stderr()
        poll(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in [manager, *serving]), 5,
             what="the rest of the HTTP server to die with the API worker")


def test_a_frozen_http_server_gets_no_more_beats(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(self_check_interval=0.2, processes=2)
        manager, serving = http_tree(c, 2)
        poll(lambda: len(c.beats()) >= 2, 15, what="beats while the server answers")
        for p in [manager, *serving]:
            p.suspend()
        before = len(c.beats())
        poll(lambda: [m for m in c.read_messages() if m["t"] == "cycle" and not m["ok"]], 15,
             what="a failed self-check cycle")
        failed = next(m for m in c.messages if m["t"] == "cycle" and not m["ok"])
        assert "timed out" in failed["error"]
        assert len(c.beats()) <= before + 1  # at most one check was already in flight when they froze
        assert c.proc.poll() is None  # the worker keeps checking; the supervisor's heartbeat timeout kills it


def test_one_frozen_serving_process_among_healthy_ones_stops_the_beats(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(self_check_interval=0.2, processes=2)
        port = c.wait_port()
        _, serving = http_tree(c, 2)
        poll(lambda: len(c.beats()) >= 2, 15, what="beats while the server answers")
        serving[0].suspend()  # the other keeps answering: a single request would often still succeed
        seen = len(c.read_messages())
        failed = poll(lambda: [m for m in c.read_messages()[seen:] if m["t"] == "cycle" and not m["ok"]],
                      15, what="a failed self-check cycle")
        assert f"GET /api/last_update on 127.0.0.1:{port} failed: TimeoutError" in failed[0]["error"] \
            or failed[0]["error"] == f"serving process {serving[0].pid} did not answer GET /api/last_update " \
                                     "(the others did)"
        beats_then = len(c.beats())
        poll(lambda: len([m for m in c.read_messages() if m["t"] == "cycle" and not m["ok"]]) >= 3, 20,
             what="two more failed cycles")
        assert len(c.beats()) == beats_then  # no beat while one serving process is frozen
