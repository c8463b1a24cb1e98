"""The supervised API process (worker kind "api"): granian serves, this process proves it.

`run(ctx)` reads the [api] section (host, port, token, processes, threads,
self_check_interval, cors_origins), opens the store (so a broken one is reported here, by
name, before anything serves), reserves the address and forks the HTTP server
(api/server.py: granian's manager and its `processes` serving processes, each
with `threads` threads and its own store connection). The loop here then,
every `period` seconds, asks the server for GET /api/last_update over loopback
(timeout SELF_CHECK_TIMEOUT_S): a 200 with a JSON success means the server,
its threads and the store all work (the answer may come from the 1 s response
cache when a client asked the same URL just before, which itself read the
store), and only then does the loop beat and report a good cycle. It asks on
new connections until each serving process has answered (api/server.py
self_check), so one wedged process among healthy ones is found too. Otherwise it
reports a failed cycle and does NOT beat, so a wedged server goes silent and
the supervisor kills the whole group. Nothing beats from anywhere else, and
the wait between checks does not beat either (ctx.idle would).

`period` is self_check_interval, shortened to the worker's `interval` (the
supervisor expects a cycle per interval) and to a third of the heartbeat
timeout when those are smaller.

The address is ours alone: `bind()` listens on it without SO_REUSEPORT
(api/listener.py), so a second tree configured on the same port exits here
with EXIT_CANNOT_LISTEN, naming the address and the process that holds it.
`bind()` also raises the soft open-files limit to the hard one and sizes the
server's connections from it (api/capacity.py: idle connections must not
starve the good clients).

A stop: the supervisor sends SIGTERM to the whole group. This process waits
for its HTTP server to end (up to STOP_GRACE_S; granian's manager logs how it
ended, in one line), then ends by the same signal, as it would have at once
without waiting. The signal is blocked and taken with sigtimedwait() in the
wait between checks, so no handler runs in the middle of a check.

The token: MDW_API_TOKEN, if set and non-empty, overrides [api] token.
With [provider] kind = "schwab", /metrics reads the Schwab token file in the
state dir for mdw_schwab_refresh_token_expiry_seconds (no Schwab secret is
needed for that: the API sees none).

Exit codes: EXIT_CANNOT_LISTEN (69) when the address cannot be bound (port in
use, bad host), EXIT_STORE (70) when the store cannot be opened, EXIT_SERVER_DIED
(71) when the HTTP server's process tree ended; the supervisor backs off and retries.
"""
from __future__ import annotations

import errno
import logging
import os
import signal
import time
from typing import Optional

from supervisor.shared.control_client import ControlClient, socket_path
from workers.store import StoreError, StoreReader

from . import live
from .app import create_app
from .capacity import HEADER_TIMEOUT_S, MAX_CONNECTIONS_PER_PROCESS, connections_per_process, raise_open_files_limit
from .listener import holders, reserve
from .server import ServerProcess, self_check, served_by
from .status import StatusSource

__all__ = ["run", "ApiWorker", "settings_from", "EXIT_CANNOT_LISTEN", "EXIT_STORE", "EXIT_SERVER_DIED"]

log = logging.getLogger("api")

EXIT_CANNOT_LISTEN = 69  # EX_UNAVAILABLE
EXIT_STORE = 70
EXIT_SERVER_DIED = 71
SELF_CHECK_PATH = "/api/last_update"
SELF_CHECK_TIMEOUT_S = 2.0
STARTUP_TIMEOUT_S = 10.0  # granian's processes start in well under a second
CONTROL_TIMEOUT_S = 1.0  # mdwd answers status in milliseconds; a hung one must not hold requests long
STATUS_TTL_S = 1.0
STATUS_FAILURE_TTL_S = 5.0
RESPONSE_CACHE_TTL_S = 1.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
STOP_GRACE_S = 2.0  # granian stops in milliseconds; the supervisor's stop_timeout (5 s) kills after this
DEFAULTS = {"host": "127.0.0.1", "port": 8000, "token": "", "threads": 4, "self_check_interval": 5.0,
            "processes": 2, "cors_origins": ["*"]}


def settings_from(ctx, environ=os.environ) -> dict:
    """The [api] section with defaults filled in and MDW_API_TOKEN applied."""
    section = dict(DEFAULTS)
    section.update((getattr(ctx.spec, "sections", None) or {}).get("api") or {})
    if environ.get("MDW_API_TOKEN"):
        section["token"] = environ["MDW_API_TOKEN"]
    return section


def refresh_token_expiry(ctx):
    """With [provider] kind = "schwab": a callable giving the refresh token's seconds left (for /metrics)."""
    provider = (getattr(ctx.spec, "sections", None) or {}).get("provider") or {}
    if provider.get("kind") != "schwab":
        return None
    from workers.providers.schwab_expiry import seconds_left
    from workers.providers.schwab_tokens import token_path

    path = token_path(provider, ctx.state_dir)
    return lambda: seconds_left(path)


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
        self.server: Optional[ServerProcess] = None
        self.stopped_by: Optional[int] = None  # the stop signal that ended serve_forever

    def open_store(self) -> None:
        """StoreError if the database cannot be opened or is newer than this code.

        This connection only proves the store is readable and is closed before
        the fork: every serving process opens its own (SQLite connections must
        not cross a fork).
        """
        StoreReader(self.ctx.state_dir).close()

    def bind(self) -> None:
        """Listen on the address, sized for the open-files limit; OSError if the address cannot be had.

        OSError: address in use (errno EADDRINUSE), not ours, or a host that does not resolve.
        """
        listener = reserve(self.settings["host"], int(self.settings["port"]))
        open_files = raise_open_files_limit()
        connections = connections_per_process(open_files)
        if connections < MAX_CONNECTIONS_PER_PROCESS:
            log.warning("the open-files limit is %d even after raising the soft limit to the hard one: each "
                        "serving process holds at most %d connections (LimitNOFILE= raises it)",
                        open_files, connections)
        self.server = ServerProcess(self.make_app, listener, self.ctx.name,
                                    processes=int(self.settings["processes"]),
                                    threads=int(self.settings["threads"]),
                                    connections=connections, header_timeout=HEADER_TIMEOUT_S)

    def make_app(self):
        """The WSGI app over a new store connection (called in each serving process)."""
        reader = StoreReader(self.ctx.state_dir)
        status = StatusSource(ControlClient(socket_path(self.ctx.state_dir), timeout=CONTROL_TIMEOUT_S),
                              ttl=STATUS_TTL_S, failure_ttl=STATUS_FAILURE_TTL_S,
                              stale_overrides=self.settings.get("stale_after"))
        app = create_app(reader, status, token=self.settings["token"], cache_ttl=RESPONSE_CACHE_TTL_S,
                         api_name=self.ctx.name, cors_origins=self.settings["cors_origins"],
                         refresh_token_expiry=refresh_token_expiry(self.ctx),
                         live=live.from_config((getattr(self.ctx.spec, "sections", None) or {}).get("provider"),
                                               self.ctx.state_dir))
        return served_by(app, os.getpid())

    def start(self) -> None:
        """Fork the HTTP server and wait (up to STARTUP_TIMEOUT_S) until every serving process answers."""
        self.server.start()
        problem = self.server.wait_until_answering(SELF_CHECK_PATH, STARTUP_TIMEOUT_S)
        if problem is not None:
            log.warning("the HTTP server is not answering %gs after its start: %s", STARTUP_TIMEOUT_S, problem)
        where = ", ".join(f"{h}:{p}" for h, p in self.server.addresses)
        log.info("serving the API on %s with granian, %d processes x %d threads, up to %d connections each, "
                 "idle ones closed after %gs (mutating endpoints %s); self-check every %gs", where,
                 int(self.settings["processes"]), int(self.settings["threads"]), self.server.connections,
                 self.server.header_timeout, "enabled" if self.settings["token"] else "disabled: no token",
                 self.period)

    def run_once(self) -> bool:
        """Ask every serving process over loopback; beat and report a good cycle only if all answered well."""
        started = time.monotonic()
        problem = self_check(self.server.host, self.server.port, SELF_CHECK_PATH, SELF_CHECK_TIMEOUT_S,
                             self.server.serving_pids())
        duration = time.monotonic() - started
        if problem is None:
            self.ctx.beat("self-check", SELF_CHECK_PATH)
            self.ctx.cycle(True, duration, {"self_checks": 1})
            return True
        log.warning("self-check failed: %s", problem)
        self.ctx.cycle(False, duration, error=problem)
        return False

    def serve_forever(self) -> int:
        """Self-check every period for as long as the HTTP server runs; EXIT_SERVER_DIED when it ended.

        A stop signal taken in the wait between checks (see `wait`) ends the
        loop too, after `stop`: `stopped_by` says which, and the code returned is 0.
        """
        while True:
            if not self.server.alive:
                log.error("the HTTP server process (pid %d) has ended (%s); exiting so the supervisor "
                          "restarts the API", self.server.pid, self.server.describe_exit())
                return EXIT_SERVER_DIED
            self.run_once()
            signum = self.wait(self.period)
            if signum is not None:
                self.stop(signum)
                return 0

    @staticmethod
    def wait(seconds: float) -> Optional[int]:
        """Sleep `seconds`, or until a blocked stop signal arrives: its number, or None."""
        info = signal.sigtimedwait(STOP_SIGNALS, seconds)
        return info.si_signo if info is not None else None

    def stop(self, signum: int) -> None:
        """Wait up to STOP_GRACE_S for the HTTP server to end on the stop signal.

        The supervisor signals the whole group, so the server has the signal
        already; only when it still runs halfway through the grace (this
        process alone was signalled) is the signal passed on to it.
        """
        self.stopped_by = signum
        if not self._ended_within(STOP_GRACE_S / 2):
            try:
                os.kill(self.server.pid, signum)
            except ProcessLookupError:
                pass
            if not self._ended_within(STOP_GRACE_S / 2):
                log.warning("the HTTP server (pid %d) did not end within %gs of %s; leaving it to the "
                            "supervisor's SIGKILL", self.server.pid, STOP_GRACE_S, signal.Signals(signum).name)

    def _ended_within(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while self.server.alive:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True


def cannot_listen(host: str, port, exc: OSError) -> str:
    """The log line for an address that cannot be had: which, and why."""
    where = f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    why = getattr(exc, "strerror", None) or str(exc)
    if getattr(exc, "errno", None) == errno.EADDRINUSE:
        held = holders(int(port))
        by = f", {', '.join(held)}" if held else ""
        return (f"cannot listen on {where}: another process holds the port ({why}{by}); is another "
                "market-data-worker tree or server running on it? Check [api] host and port")
    return f"cannot listen on {where}: {why} (check [api] host and port)"


def die_by(signum: int) -> None:
    """End this process by `signum`'s default action, as if it had not been blocked."""
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)
    raise SystemExit(128 + signum)  # not reached: the default action of a stop signal ends the process


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
    except OSError as exc:
        log.error("%s", cannot_listen(host, port, exc))
        raise SystemExit(EXIT_CANNOT_LISTEN)
    worker.start()  # forks the server first: it must not inherit the blocked signals
    signal.pthread_sigmask(signal.SIG_BLOCK, set(STOP_SIGNALS))
    code = worker.serve_forever()
    if worker.stopped_by is not None:
        die_by(worker.stopped_by)
    raise SystemExit(code)
