"""Serving the app with waitress in a background thread, and asking it over loopback.

`Server(app, host, port, threads)` binds at construction (an OSError such as
EADDRINUSE surfaces there, before anything runs), `start()` runs waitress's
loop in a daemon thread, `stop()` closes the sockets and the thread pool.
`self_check(url)` is the worker's proof of life: one real HTTP request with a
short timeout, returning what it found wrong or None.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from typing import Optional

from waitress.server import create_server

__all__ = ["Server", "self_check", "loopback_host", "listen"]

log = logging.getLogger("api.server")


class _OncePer(logging.Filter):
    """Let one record through per `seconds`, saying how many were held back.

    waitress logs "Task queue depth is N" for every request that waits for a
    thread; under a burst that is thousands of lines a second, which would
    cost more CPU than the requests and flood the supervisor's log limit.
    """

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self._next = float("-inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        if now < self._next:
            self._held += 1
            return False
        if self._held:
            record.msg = f"{record.getMessage()} ({self._held} similar messages in the last {self.seconds:g}s)"
            record.args = ()
        self._held, self._next = 0, now + self.seconds
        return True


_QUEUE_LOG = logging.getLogger("waitress.queue")
if not any(isinstance(f, _OncePer) for f in _QUEUE_LOG.filters):
    _QUEUE_LOG.addFilter(_OncePer(60.0))


def loopback_host(host: str) -> str:
    """Where to reach a server bound to `host` from this machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def listen(host: str, port: int, backlog: int = 1024) -> socket.socket:
    """A listening TCP socket for host:port, to be served by one or several processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=backlog, reuse_port=False)


class Server:
    """One waitress server (multi-threaded) for a WSGI app, run in a daemon thread."""

    def __init__(self, app, host: str, port: int, threads: int, sockets=None, **adjustments):
        """Bind host:port, or serve the already listening `sockets` (shared by sibling processes)."""
        # No endpoint reads a body: refuse big ones instead of spooling up to waitress's 1 GiB.
        settings = dict(ident="market-data-worker", asyncore_use_poll=True,
                        clear_untrusted_proxy_headers=True, max_request_body_size=64 * 1024)
        settings.update(adjustments)
        where = dict(sockets=sockets) if sockets else dict(host=host, port=port)
        self._server = create_server(app, threads=threads, **where, **settings)
        self._thread: Optional[threading.Thread] = None
        listen = getattr(self._server, "effective_listen", None)
        if not listen:
            listen = [(self._server.effective_host, self._server.effective_port)]
        self.addresses = [(str(h), int(p)) for h, p in listen]

    @property
    def host(self) -> str:
        return loopback_host(self.addresses[0][0])

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def url(self, path: str) -> str:
        host = self.host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}{path}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="waitress", daemon=True)
        self._thread.start()

    def serve_in_this_thread(self) -> None:
        """Run the server loop here until it fails (a sibling serving process does only this)."""
        self._serve()

    def _serve(self) -> None:
        try:
            self._server.run()
        except Exception:
            log.exception("the waitress loop failed")
            raise

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listening sockets and connections, end the loop and the thread pool."""
        server = self._server
        socket_map = getattr(server, "map", None) or getattr(server, "_map", None) or {}
        while socket_map:  # as WebTest's StopableWSGIServer.shutdown does
            for dispatcher in list(socket_map.values()):
                try:
                    dispatcher.handle_close()
                except OSError:
                    socket_map.pop(getattr(dispatcher, "_fileno", None), None)
        server.task_dispatcher.shutdown(timeout=timeout)
        if self._thread is not None:
            self._thread.join(timeout)


def self_check(host: str, port: int, path: str, timeout: float) -> Optional[str]:
    """GET `path` from the server; None if it answered 200 with a JSON success, else what was wrong."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "mdw-api-self-check"})
        response = conn.getresponse()
        body = response.read(1 << 20)
        if response.status != 200:
            return f"GET {path} answered {response.status}: {body[:200]!r}"
        answer = json.loads(body)
        if not isinstance(answer, dict) or answer.get("success") is not True:
            return f"GET {path} answered 200 without success: {body[:200]!r}"
        return None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return f"GET {path} on {host}:{port} failed: {type(exc).__name__}: {exc}"
    finally:
        conn.close()
