"""Serving the app with granian in a child process, and asking it over loopback.

The API worker (api/worker.py) never serves HTTP itself. It listens on the
address (api/listener.py), then `ServerProcess.start()` forks one process
that runs granian's manager, which forks `processes` serving processes; each
serves the WSGI app from `threads` Python threads while granian's Rust
runtime does the sockets and HTTP parsing. The tree, all in the API worker's
process group so the supervisor's kill reaches every member:

    mdw:api           self-check loop, beats (api/worker.py)
    └─ mdw:api.http   granian's manager (ServerProcess)
       ├─ mdw:api.http   serving process, builds the app after the fork
       └─ mdw:api.http   serving process

Each member dies with its parent (parent-death signal), and granian's manager
exits when a serving process dies (respawn_failed_workers is off), so the API
worker sees `alive` turn False and exits for the supervisor to restart it whole.

Why granian: on the 2-core box, with the app answering from its response
cache, waitress topped out at ~6,900 requests/s in two processes (its Python
event loop, handing each request to a thread and back) and cheroot did no
better, against ~33,000 for granian with the same two processes (see
bench/bench_api.py). The app code is the same under every server.

The address: the API worker hands over a socket it already listens on
(api/listener.py `reserve`: no SO_REUSEPORT, so nothing else can bind the port
while the API runs), and every serving process accepts on that one socket
(`granian_on`). Each serving process holds up to `connections` connections
(granian's backpressure) and closes one that has not sent a request head
within `header_timeout` seconds (api/capacity.py says why).

How the server ended is logged in one line by its manager: INFO for a stop on
SIGTERM or SIGINT, WARNING for granian's own exit code (it exits 1 when a
serving process ended) or a parent that is already gone; only an unexpected
exception gets a traceback (`report_exit`).

`self_check(host, port, path, timeout, pids)` is the worker's proof of life:
real HTTP requests with a short timeout, on new connections until each serving
process has answered (the app names the one that answered in a response
header, see `served_by`), returning what was wrong or None.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import signal
import socket
import time
from typing import Callable, Optional

from supervisor.shared import linux
from supervisor.shared.exits import signal_name

from .capacity import HEADER_TIMEOUT_S, MAX_CONNECTIONS_PER_PROCESS
from .listener import BACKLOG, granian_on

__all__ = ["ServerProcess", "report_exit", "self_check", "served_by", "loopback_host", "SERVED_BY",
           "EXIT_SERVER_FAILED"]

log = logging.getLogger("api.server")

EXIT_SERVER_FAILED = 1
SERVED_BY = "X-MDW-Served-By"  # response header: the pid of the serving process (see self_check)
SWEEP_ASKS_PER_PROCESS = 16
SWEEP_TIMEOUTS = 3
# granian logs through "_granian" (and access lines through "granian.access", off here). Hand its
# records to the root handler like every other logger, instead of the stdout handler it would install.
GRANIAN_LOGGING = {
    "version": 1, "disable_existing_loggers": False, "formatters": {}, "handlers": {},
    "loggers": {"_granian": {"propagate": True}, "granian.access": {"propagate": True}},
}


def loopback_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


class ServerProcess:
    """granian serving `app_factory()` on a listening socket of ours, in a forked process tree."""

    def __init__(self, app_factory: Callable[[], Callable], listener: socket.socket, name: str,
                 processes: int, threads: int, connections: int = MAX_CONNECTIONS_PER_PROCESS,
                 header_timeout: float = HEADER_TIMEOUT_S):
        self.app_factory = app_factory
        self.listener = listener  # kept open for as long as this process lives, as in every member of the tree
        self.name = name
        self.processes = processes
        self.threads = threads
        self.connections = connections
        self.header_timeout = header_timeout
        bound = listener.getsockname()
        self.addresses = [(str(bound[0]), int(bound[1]))]
        self.pid: Optional[int] = None
        self.exit_status: Optional[int] = None
        self._granian = None

    @property
    def host(self) -> str:
        return loopback_host(self.addresses[0][0])

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def start(self) -> None:
        """Fork granian's manager; call before this process starts any thread."""
        parent = os.getpid()
        pid = os.fork()
        if pid:
            self.pid = pid
            return
        code = EXIT_SERVER_FAILED
        try:
            code = report_exit(lambda: self._serve(parent), self._why_stopped)
        finally:
            logging.shutdown()
            os._exit(code)

    def _become_member(self, parent: int, parent_role: str) -> None:
        """Die with `parent`, and be named so `ps` and the tests tell the API's processes apart."""
        linux.set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != parent:
            log.warning("%s (pid %d) is gone before pid %d could start; exiting with code %d",
                        parent_role, parent, os.getpid(), EXIT_SERVER_FAILED)
            logging.shutdown()
            os._exit(EXIT_SERVER_FAILED)
        linux.set_process_name(f"mdw:{self.name}.http")

    def _serve(self, parent: int) -> None:
        from granian.constants import HTTPModes, Interfaces
        from granian.http import HTTP1Settings

        self._become_member(parent, "the API worker")
        manager = os.getpid()
        host, port = self.addresses[0]

        def load_app(_target):
            """In each serving process, after granian's fork: the app, with its own store connection."""
            self._become_member(manager, "granian's manager")
            return self.app_factory()

        # granian titles its processes with setproctitle (a dependency of ours): "mdw: api.http" for
        # its manager, "mdw: api.http worker-1" for a serving process. setproctitle sets comm too; the
        # startup hook (in the manager) and load_app (in each serving process) set it back to ours.
        title = f"mdw: {self.name}.http"
        self._granian = granian_on(
            self.listener, target=f"mdw:{self.name}", address=host, port=port, interface=Interfaces.WSGI,
            workers=self.processes, blocking_threads=self.threads, http=HTTPModes.http1, websockets=False,
            backlog=BACKLOG, backpressure=self.connections,
            http1_settings=HTTP1Settings(header_read_timeout=round(self.header_timeout * 1000), keep_alive=True),
            log_dictconfig=GRANIAN_LOGGING, respawn_failed_workers=False, process_name=title)
        self._granian.on_startup(lambda: linux.set_process_name(f"mdw:{self.name}.http"))
        self._granian.serve(target_loader=load_app)

    def _why_stopped(self) -> str:
        """What granian noted about its end (its attributes, read only for this log line)."""
        server = self._granian
        if server is None:
            return ""
        if getattr(server, "interrupt_signal", False):
            return "on SIGTERM or SIGINT"
        ended = getattr(server, "interrupt_children", None)
        if ended:
            return f"because its serving process worker-{', worker-'.join(str(i + 1) for i in ended)} ended"
        return ""

    def wait_until_answering(self, path: str, timeout: float) -> Optional[str]:
        """Wait until all `processes` serving processes answer `path` well; None, or the last problem."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.serving_pids()
            if not self.alive:
                return f"the HTTP server ended ({self.describe_exit()})"
            if len(pids) < self.processes:
                problem = f"{len(pids)} of {self.processes} serving processes started"
            else:
                problem = self_check(self.host, self.port, path, 1.0, pids)
                if problem is None:
                    return None
            if time.monotonic() >= deadline:
                return problem
            time.sleep(0.02)

    def serving_pids(self) -> list[int]:
        """The pids of granian's serving processes (its manager's children), [] if it is gone."""
        return linux.children(self.pid) if self.pid else []

    @property
    def alive(self) -> bool:
        """Whether granian's manager still runs (reaping it, and noting its status, once it ended)."""
        if self.pid is None or self.exit_status is not None:
            return False
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self.exit_status = status
        return False

    def describe_exit(self) -> str:
        status = self.exit_status
        if status is None:
            return "still running" if self.pid else "never started"
        code = os.waitstatus_to_exitcode(status)
        killed_by = signal_name(code)
        return f"killed by {killed_by}" if killed_by else f"exit code {code}"


def report_exit(serve: Callable[[], None], why: Callable[[], str] = lambda: "") -> int:
    """Run `serve()` and log how it ended in one line; the exit code for the process.

    Returning is a stop on request (granian returns after SIGTERM or SIGINT):
    INFO, code 0. SystemExit is granian's own designed exit (code 1 when a
    serving process ended, after its own line saying which): WARNING with the
    code, no traceback. Anything else is a failure: ERROR with the traceback,
    EXIT_SERVER_FAILED. `why()` adds the reason granian noted, if any.
    """
    try:
        serve()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_SERVER_FAILED)
        reason = _safe_reason(why)
        log.log(logging.INFO if code == 0 else logging.WARNING, "the HTTP server (granian) exited with code %d%s",
                code, f" {reason}" if reason else "")
        return code
    except BaseException:
        log.exception("the HTTP server (granian) failed")
        return EXIT_SERVER_FAILED
    reason = _safe_reason(why)
    log.info("the HTTP server (granian) stopped%s (exit code 0)", f" {reason}" if reason else "")
    return 0


def _safe_reason(why: Callable[[], str]) -> str:
    try:
        return why()
    except Exception:  # a reason is a nicety: never let it turn a clean exit into a failure
        return ""


def served_by(app: Callable, pid: int) -> Callable:
    """`app`, answering every request with the header SERVED_BY naming the serving process."""
    header = (SERVED_BY, str(pid))

    def answering(environ, start_response):
        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, header], exc_info)
        return app(environ, start)

    return answering


def ask(host: str, port: int, path: str, timeout: float) -> tuple[Optional[str], Optional[int]]:
    """GET `path` on a new connection: (what was wrong or None if a 200 JSON success, the serving pid)."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "mdw-api-self-check"})
        response = conn.getresponse()
        body = response.read(1 << 20)
        served = response.getheader(SERVED_BY, "")
        pid = int(served) if served.isdigit() else None
        if response.status != 200:
            return f"GET {path} answered {response.status}: {body[:200]!r}", pid
        answer = json.loads(body)
        if not isinstance(answer, dict) or answer.get("success") is not True:
            return f"GET {path} answered 200 without success: {body[:200]!r}", pid
        return None, pid
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"GET {path} on {host}:{port} failed: {type(exc).__name__}: {exc}", None
    finally:
        conn.close()


def self_check(host: str, port: int, path: str, timeout: float, pids=()) -> Optional[str]:
    """Ask until every serving process in `pids` has answered well; what was wrong, or None.

    The kernel hands each new connection to one of the processes sharing the
    port, so one wedged process among healthy ones would fail only some
    requests: a check that asked once could miss it. Asking on new connections
    until every pid has answered (SERVED_BY), each request within `timeout` and
    all within SWEEP_TIMEOUTS x `timeout`, finds it: a request that lands on it
    times out, and a pid never heard from in SWEEP_ASKS_PER_PROCESS requests
    per process is reported (by chance that happens with p < 1e-9 for 2).
    With no `pids`, one good answer is enough.
    """
    missing = set(pids)
    deadline = time.monotonic() + SWEEP_TIMEOUTS * timeout
    for _ in range(max(1, SWEEP_ASKS_PER_PROCESS * len(missing))):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        problem, pid = ask(host, port, path, min(timeout, remaining))
        if problem is not None:
            return problem
        missing.discard(pid)
        if not missing:
            return None
    return (f"serving process{'es' if len(missing) > 1 else ''} {', '.join(map(str, sorted(missing)))} "
            f"did not answer GET {path} (the others did)")
