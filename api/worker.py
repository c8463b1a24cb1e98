"""The supervised API process (worker kind "api"): waitress in a thread, proof of life in the loop.

`run(ctx)` reads the [api] section (host, port, token, threads,
self_check_interval), opens the store, binds the server and serves it from a
background thread. The main loop then, every `period` seconds, asks the
server for GET /api/last_update over loopback (timeout SELF_CHECK_TIMEOUT_S):
a 200 with a JSON success means the server, its threads and the store all
work (the answer may come from the 1 s response cache when a client asked the
same URL just before, which itself read the store), and only then does the
loop beat and report a good cycle. Otherwise it
reports a failed cycle and does NOT beat, so a wedged server goes silent and
the supervisor kills the process. Nothing beats from any other thread, and
the wait between checks does not beat either (ctx.idle would).

`period` is self_check_interval, shortened to the worker's `interval` (the
supervisor expects a cycle per interval) and to a third of the heartbeat
timeout when those are smaller.

The token: MDW_API_TOKEN, if set and non-empty, overrides [api] token.

Exit codes: EXIT_CANNOT_LISTEN (69) when the address cannot be bound (port in
use, bad host), EXIT_STORE (70) when the store cannot be opened, EXIT_SERVER_DIED
(71) when the waitress thread ended; the supervisor backs off and retries.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Optional

from supervisor import linux
from supervisor.control_client import ControlClient, socket_path
from workers.store import StoreError, StoreReader

from .app import create_app
from .server import Server, listen, self_check
from .status import StatusSource

__all__ = ["run", "ApiWorker", "settings_from", "EXIT_CANNOT_LISTEN", "EXIT_STORE", "EXIT_SERVER_DIED"]

log = logging.getLogger("api")

EXIT_CANNOT_LISTEN = 69  # EX_UNAVAILABLE
EXIT_STORE = 70
EXIT_SERVER_DIED = 71
SELF_CHECK_PATH = "/api/last_update"
SELF_CHECK_TIMEOUT_S = 2.0
CONTROL_TIMEOUT_S = 1.0  # mdwd answers status in milliseconds; a hung one must not hold requests long
STATUS_TTL_S = 1.0
STATUS_FAILURE_TTL_S = 5.0
RESPONSE_CACHE_TTL_S = 1.0
DEFAULTS = {"host": "127.0.0.1", "port": 8000, "token": "", "threads": 8, "self_check_interval": 5.0,
            "processes": 2}


def settings_from(ctx, environ=os.environ) -> dict:
    """The [api] section with defaults filled in and MDW_API_TOKEN applied."""
    section = dict(DEFAULTS)
    section.update((getattr(ctx.spec, "sections", None) or {}).get("api") or {})
    if environ.get("MDW_API_TOKEN"):
        section["token"] = environ["MDW_API_TOKEN"]
    return section


class ApiWorker:
    """The pieces of the API process; `run_once()` is one self-check cycle."""

    def __init__(self, ctx, environ=os.environ):
        self.ctx = ctx
        self.settings = settings_from(ctx, environ)
        limits = [float(self.settings["self_check_interval"]), float(ctx.interval)]
        heartbeat_timeout = getattr(ctx.spec, "heartbeat_timeout", None)
        if heartbeat_timeout:
            limits.append(float(heartbeat_timeout) / 3)
        self.period = max(0.05, min(limits))
        self.reader: Optional[StoreReader] = None
        self.server: Optional[Server] = None
        self.listener = None
        self.siblings: list[int] = []  # pids of the other serving processes
        self.stopping = threading.Event()

    def open(self) -> None:
        """Open the store and bind the server (see open_store and bind for what they raise)."""
        self.open_store()
        self.bind()

    def open_store(self) -> None:
        """StoreError if the database cannot be opened or is newer than this code."""
        self.reader = StoreReader(self.ctx.state_dir)

    def bind(self) -> None:
        """OSError (address in use, not ours) or ValueError (host does not resolve) if it cannot listen.

        One listening socket, served by `processes` processes: this one (in a
        thread, beside the self-check loop) and `processes - 1` siblings forked
        here, before any thread exists. The kernel spreads connections over
        them, so the API uses more than one core despite the GIL. The siblings
        are in this process's group (the supervisor's kill reaches them), die
        with it (parent-death signal), and if one dies this process exits, so
        the supervisor restarts the whole API.
        """
        self.listener = listen(self.settings["host"], int(self.settings["port"]))
        for number in range(1, int(self.settings["processes"])):
            self.siblings.append(self._fork_sibling(number))
        self.server = self._server(self.reader)

    def _server(self, reader) -> Server:
        status = StatusSource(ControlClient(socket_path(self.ctx.state_dir), timeout=CONTROL_TIMEOUT_S),
                              ttl=STATUS_TTL_S, failure_ttl=STATUS_FAILURE_TTL_S,
                              stale_overrides=self.settings.get("stale_after"))
        app = create_app(reader, status, token=self.settings["token"], cache_ttl=RESPONSE_CACHE_TTL_S)
        return Server(app, self.settings["host"], int(self.settings["port"]), int(self.settings["threads"]),
                      sockets=[self.listener])

    def _fork_sibling(self, number: int) -> int:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        code = EXIT_SERVER_DIED
        try:
            linux.set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(code)
            linux.set_process_name(f"mdw:{self.ctx.name}.{number}")
            self._server(StoreReader(self.ctx.state_dir)).serve_in_this_thread()
        except BaseException:
            log.exception("serving process %d failed", number)
        finally:
            os._exit(code)

    def start(self) -> None:
        self.server.start()
        where = ", ".join(f"{h}:{p}" for h, p in self.server.addresses)
        log.info("serving the API on %s with %d threads (mutating endpoints %s); self-check every %gs",
                 where, int(self.settings["threads"]),
                 "enabled" if self.settings["token"] else "disabled: no token", self.period)

    def run_once(self) -> bool:
        """Ask the server over loopback; beat and report a good cycle only if it answered well."""
        started = time.monotonic()
        problem = self_check(self.server.host, self.server.port, SELF_CHECK_PATH, SELF_CHECK_TIMEOUT_S)
        duration = time.monotonic() - started
        if problem is None:
            self.ctx.beat("self-check", SELF_CHECK_PATH)
            self.ctx.cycle(True, duration, {"self_checks": 1})
            return True
        log.warning("self-check failed: %s", problem)
        self.ctx.cycle(False, duration, error=problem)
        return False

    def serve_forever(self) -> int:
        """Self-check every period until stopped; the exit code if the server thread died."""
        while not self.stopping.is_set():
            if not self.server.alive:
                log.error("the waitress thread has ended; exiting so the supervisor restarts us")
                return EXIT_SERVER_DIED
            for pid in self.siblings:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    log.error("serving process %d has ended; exiting so the supervisor restarts the API", pid)
                    self.siblings.remove(pid)
                    return EXIT_SERVER_DIED
            self.run_once()
            self.stopping.wait(self.period)
        return 0

    def close(self) -> None:
        self.stopping.set()
        for pid in self.siblings:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        self.siblings = []
        if self.server is not None:
            self.server.stop()
        elif self.listener is not None:
            self.listener.close()
        if self.reader is not None:
            self.reader.close()


def run(ctx) -> None:
    """Entry point of the "api" worker kind (workers/kinds.py)."""
    worker = ApiWorker(ctx)
    host, port = worker.settings["host"], worker.settings["port"]
    try:
        worker.open_store()
    except StoreError as exc:
        log.error("cannot open the store in %s: %s", ctx.state_dir, exc)
        raise SystemExit(EXIT_STORE)
    try:
        worker.bind()
    except (OSError, ValueError) as exc:
        log.error("cannot listen on %s:%s: %s (check [api] host and port; is another process using the port?)",
                  host, port, getattr(exc, "strerror", None) or exc)
        worker.close()
        raise SystemExit(EXIT_CANNOT_LISTEN)
    worker.start()
    raise SystemExit(worker.serve_forever())
