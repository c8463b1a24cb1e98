"""Helpers and fixtures for the API tests: WSGI calls, a filled store, a fake control socket,
and the API worker as a real process (`Child`, the `child` fixture)."""
from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from wsgiref.util import setup_testing_defaults

import psutil
import pytest

from api.app import create_app
from api.status import StatusSource
from supervisor.shared.control_client import ControlClient
from supervisor.shared.protocol import MessageDecoder
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll
from workers.store import StoreError, StoreReader, StoreWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
    flow = dict(volume=1000, open_interest=100, vol_oi=10.0, premium=10.0, total_premium=1e6, delta=0.5,
                expiry="2026-04-17", dte=46, iv=0.45, underlying_price=180.0)
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

    def make(token="", now=NOW + dt.timedelta(seconds=30), socket=None, cache_ttl=0.0, reader=None, api_name="api",
             cors_origins=("*",)):
        if reader is None:
            reader = StoreReader(state_dir, now=lambda: now)
            readers.append(reader)
        status = StatusSource(ControlClient(socket or control.path, timeout=2.0), ttl=0.0)
        return create_app(reader, status, token=token, cache_ttl=cache_ttl, api_name=api_name,
                          cors_origins=cors_origins)

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def app(make_app):
    return make_app()


class _BrokenStore:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise StoreError(None, "read failed: database is locked")
        return fail


# -- the API worker as a real process ------------------------------------------

def make_spec(state_dir, interval=1.0, heartbeat_timeout=30.0, **api):
    section = {"host": "127.0.0.1", "port": 0, "token": "", "threads": 2, "self_check_interval": 0.2, "processes": 2}
    section.update(api)
    return SimpleNamespace(name="api", kind="api", interval=interval, options={}, state_dir=str(state_dir),
                           heartbeat_timeout=heartbeat_timeout, sections={"api": section})


def child_main(argv):
    """In the child: a real WorkerContext writing heartbeats to fd argv[1], then api.worker.run.

    argv[3] may set `header_timeout`: the api worker's HEADER_TIMEOUT_S, shortened
    so a test sees an idle connection closed in a second rather than ten.
    """
    import logging

    import api.worker
    from supervisor.shared.context import WorkerContext

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    section, options = json.loads(argv[2]), json.loads(argv[3])
    if "header_timeout" in options:
        api.worker.HEADER_TIMEOUT_S = float(options["header_timeout"])
    spec = make_spec(argv[0], **section)
    api.worker.run(WorkerContext(spec, int(argv[1])))


class Child:
    """`api.worker.run` in its own session; heartbeats read from a pipe, stderr from a file.

    `open_files`: the soft RLIMIT_NOFILE it starts with (systemd's default is 1024).
    """

    def __init__(self, directory, state_dir, section, open_files=None, **options):
        self.read_fd, write_fd = os.pipe()
        self.stderr_path = Path(directory) / "child.stderr"
        self.decoder = MessageDecoder()
        self.messages = []
        code = f"import sys; sys.path.insert(0, {ROOT!r}); from tests.api_support import child_main; " \
               "child_main(sys.argv[1:])"
        env = {k: v for k, v in os.environ.items() if k not in ("MDW_API_TOKEN", "RUNTIME_DIRECTORY")}

        def limit_open_files():
            if open_files is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", code, str(state_dir), str(write_fd), json.dumps(section), json.dumps(options)],
                pass_fds=[write_fd], stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                start_new_session=True, cwd=ROOT, env=env, preexec_fn=limit_open_files)
        os.close(write_fd)

    def stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def read_messages(self):
        while select.select([self.read_fd], [], [], 0)[0]:
            data = os.read(self.read_fd, 65536)
            if not data:
                break
            self.messages.extend(self.decoder.feed(data))
        return self.messages

    def beats(self):
        return [m for m in self.read_messages() if m["t"] == "beat"]

    def port(self):
        found = [line for line in self.stderr().splitlines() if "serving the API on 127.0.0.1:" in line]
        return int(found[0].split("127.0.0.1:")[1].split()[0]) if found else None

    def wait_port(self, timeout=15):
        return poll(self.port, timeout, what=lambda: f"the serving line in:\n{self.stderr()}")

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)
        os.close(self.read_fd)


@pytest.fixture
def child(tmp_path):
    """Start API worker processes: child(**[api] keys), with `state_dir`, `open_files` and
    `options` (see child_main) if wanted; each has its own directory and, unless given
    another, the filled store in tmp_path/"state". Every one is killed with its group afterwards."""
    fill(tmp_path / "state")
    children = []
    numbers = itertools.count(1)

    def start(state_dir=None, open_files=None, options=None, **section):
        directory = tmp_path / f"child-{next(numbers)}"
        directory.mkdir()
        c = Child(directory, state_dir or tmp_path / "state", section, open_files=open_files, **(options or {}))
        children.append(c)
        return c

    yield start
    for c in children:
        c.kill()


def http_tree(c, processes):
    """granian's manager and its serving processes under the API worker, once all are up."""
    def found():
        managers = [p for p in psutil.Process(c.proc.pid).children() if p.name() == "mdw:api.http"]
        if len(managers) != 1:
            return None
        serving = [p for p in managers[0].children() if p.name() == "mdw:api.http"]
        listening = [p for p in serving if any(conn.status == psutil.CONN_LISTEN for conn in p.net_connections("tcp"))]
        return (managers[0], serving) if len(listening) == processes == len(serving) else None
    return poll(found, 15, what=lambda: f"the HTTP server's {processes} serving processes; stderr:\n{c.stderr()}")
