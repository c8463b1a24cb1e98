"""HTTP hygiene for real providers: pooled session, timeouts, a TOTAL deadline, retries.

The old system froze for 27 hours on one upstream call. requests/urllib3 only
bound each socket operation (a read timeout of 10 s is "10 s without a byte"),
so a server trickling one byte a second holds a request forever. Here every
request runs against an absolute deadline (a `time.monotonic()` value):

- Connections are made by urllib3 connection classes whose socket is wrapped
  after connect (and after the TLS handshake): before EVERY recv/send the
  wrapper sets the socket timeout to min(read timeout, time left before the
  deadline) and fails at once when no time is left. Status line, headers and
  body all go through it, so a trickling server is cut off at the deadline,
  without helper threads or signals; the timed-out connection is closed, not
  returned to the pool.
- TCP connect and the TLS handshake use min(connect timeout, time left); CPython
  bounds a whole handshake by the socket timeout.
- Not covered: DNS resolution (getaddrinfo cannot be interrupted); it is
  bounded by the resolver's own timeouts, and an HTTPS proxy's CONNECT reply,
  bounded per read by the connect timeout. The supervisor's heartbeat check is
  the backstop for those.

Retries: urllib3's `Retry` decides what is retryable (429/500/502/503/504,
idempotent methods only, transport errors for GET) and computes exponential
backoff and `Retry-After`; this module does the sleeping itself so a wait never
passes the deadline: when the server asks for longer than the time left, the
call fails at once with that status. Other 4xx are never retried; 401 raises
AuthError so the caller can refresh its token.

Errors name the method and URL path (never the query's secrets: tokens travel in
headers and form bodies only) and pass body excerpts through `redact()`.
"""
from __future__ import annotations

import contextvars
import html
import io
import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.util.retry import Retry

from .base import AuthError, BadPayload, DeadlineExceeded, HttpStatusError, ProviderError
from .budget import RequestBudget

log = logging.getLogger(__name__)

_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("http_deadline",
                                                                       default=None)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class HttpConfig:
    """Timeouts in seconds. `read_timeout_s` bounds silence; the deadline bounds the total."""

    connect_timeout_s: float = 3.05
    read_timeout_s: float = 10.0
    max_retries: int = 3
    backoff_factor: float = 0.5
    backoff_max_s: float = 8.0
    max_body_bytes: int = 32 * 1024 * 1024
    pool_maxsize: int = 4
    user_agent: str = "market-data-worker/0.1"
    verify: bool | str = True  # TLS verification, or the path of a CA bundle


def deadline_in(seconds: float) -> float:
    """The absolute deadline `seconds` from now."""
    return time.monotonic() + seconds


# --- deadline-enforcing sockets and connections -----------------------------

class _DeadlineSocket:
    """Wraps a connected (possibly TLS) socket; every recv/send respects the current deadline."""

    def __init__(self, sock):
        self._sock = sock
        self._timeout = sock.gettimeout()

    def __getattr__(self, name):
        return getattr(self._sock, name)

    def settimeout(self, timeout):
        self._timeout = timeout
        self._sock.settimeout(timeout)

    def gettimeout(self):
        return self._timeout

    def _arm(self):
        deadline = _DEADLINE.get()
        if deadline is None:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("total deadline exceeded")
        self._sock.settimeout(remaining if self._timeout is None else min(self._timeout, remaining))

    def recv_into(self, *args):
        self._arm()
        return self._sock.recv_into(*args)

    def recv(self, *args):
        self._arm()
        return self._sock.recv(*args)

    def send(self, *args):
        self._arm()
        return self._sock.send(*args)

    def sendall(self, *args):
        self._arm()
        return self._sock.sendall(*args)

    def makefile(self, mode="rb", buffering=None, **_):
        """What http.client reads the response from; reads come back through recv_into."""
        if mode != "rb":
            raise ValueError(f"unsupported makefile mode {mode!r}")
        self._sock._io_refs += 1  # as socket.makefile does; SocketIO.close() gives it back
        return io.BufferedReader(socket.SocketIO(self, "rb"), buffering or io.DEFAULT_BUFFER_SIZE)


class _DeadlineHTTPConnection(HTTPConnection):
    def connect(self):
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineHTTPSConnection(HTTPSConnection):
    def connect(self):
        super().connect()
        self.sock = _DeadlineSocket(self.sock)


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineHTTPConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


_POOLS = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy, **kwargs):
        manager = super().proxy_manager_for(proxy, **kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


# --- redaction and excerpts -------------------------------------------------

_SECRET_PATTERNS = (
    (re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1[redacted]"),
    (re.compile(r"(?i)(\"?(?:access_token|refresh_token|id_token|client_secret|code)\"?"
                r"\s*[:=]\s*\"?)[^\"&\s,;}]+"), r"\1[redacted]"),
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Remove known secret values and anything shaped like a token from `text`."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[redacted]")
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _looks_like_html(body: bytes, content_type: str) -> bool:
    head = body.lstrip()[:64].lower()
    return "html" in content_type.lower() or head.startswith((b"<!doctype", b"<html", b"<head",
                                                             b"<body"))


def excerpt(body: bytes, secrets: Iterable[str] = (), limit: int = 160) -> str:
    """A short, single-line, redacted excerpt of a response body (HTML reduced to its text)."""
    text = body[:4096].decode("utf-8", errors="replace")
    if _looks_like_html(body, ""):
        title = re.search(r"(?is)<title[^>]*>(.*?)</title>", text)
        text = title.group(1) if title else re.sub(r"(?s)<[^>]*>", " ", text)
        text = html.unescape(text)
    text = redact(" ".join(text.split()), secrets)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- the client -------------------------------------------------------------

class HttpClient:
    """One pooled `requests.Session`; every call bounded by an absolute deadline."""

    def __init__(self, config: HttpConfig | None = None, *, budget: RequestBudget | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config or HttpConfig()
        self.budget = budget
        self._sleep = sleep
        self.session = requests.Session()
        adapter = _DeadlineAdapter(pool_connections=2, pool_maxsize=self.config.pool_maxsize,
                                   max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers.update({"User-Agent": self.config.user_agent,
                                     "Accept": "application/json"})

    def close(self) -> None:
        self.session.close()

    def get_json(self, url: str, *, deadline: float, params: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None, secrets: Iterable[str] = ()) -> Any:
        """GET `url`, retrying per policy, and return its decoded JSON body."""
        return self.request_json("GET", url, deadline=deadline, params=params, headers=headers,
                                 secrets=secrets)

    def request_json(self, method: str, url: str, *, deadline: float, params=None, data=None,
                     headers=None, auth=None, secrets: Iterable[str] = (),
                     use_budget: bool = True) -> Any:
        secrets = tuple(secrets)
        where = f"{method} {urlsplit(url).path}"
        retry = Retry(total=self.config.max_retries, connect=self.config.max_retries,
                      read=self.config.max_retries, status=self.config.max_retries,
                      backoff_factor=self.config.backoff_factor,
                      backoff_max=self.config.backoff_max_s, status_forcelist=RETRY_STATUSES,
                      allowed_methods=Retry.DEFAULT_ALLOWED_METHODS, raise_on_status=False,
                      respect_retry_after_header=True)
        started = time.monotonic()
        while True:
            self._check_deadline(deadline, started, where, "before sending")
            if use_budget and self.budget is not None:
                self.budget.acquire(deadline)
                self._check_deadline(deadline, started, where, "waiting for the request budget")
            try:
                response, body = self._attempt(method, url, deadline, params=params, data=data,
                                               headers=headers, auth=auth)
            except BadPayload:
                raise
            except (requests.RequestException, ProtocolError, OSError) as exc:
                error = self._transport_error(exc, deadline, started, where)
                if time.monotonic() >= deadline or isinstance(
                        exc, requests.exceptions.SSLError):  # certificates do not heal in seconds
                    raise error from exc
                try:
                    retry = retry.increment(method, url, error=ProtocolError(str(exc)))
                except Exception:
                    raise error from exc
                self._pause(retry.get_backoff_time(), deadline, error)
                continue
            status = response.status_code
            if 200 <= status < 300:
                return self._decode(body, response, where, secrets)
            if status == 401:
                raise AuthError(f"{where}: HTTP 401 Unauthorized (access token rejected): "
                                f"{excerpt(body, secrets)}")
            retry_after = self._retry_after(retry, response) if status in (429, 503) else None
            error = self._status_error(response, body, where, secrets, retry_after)
            if not retry.is_retry(method, status, has_retry_after=retry_after is not None):
                raise error
            try:
                retry = retry.increment(method, url, response=response.raw)
            except MaxRetryError:
                raise error from None
            wait = retry_after if retry_after is not None else retry.get_backoff_time()
            self._pause(wait, deadline, error)

    # -- one attempt ---------------------------------------------------------

    def _attempt(self, method, url, deadline, **kwargs) -> tuple[requests.Response, bytes]:
        remaining = max(deadline - time.monotonic(), 0.001)  # urllib3 refuses 0; sockets enforce
        timeout = (min(self.config.connect_timeout_s, remaining),
                   min(self.config.read_timeout_s, remaining))
        token = _DEADLINE.set(deadline)
        response = None
        try:
            response = self.session.request(method, url, timeout=timeout, stream=True,
                                            allow_redirects=False, verify=self.config.verify,
                                            **kwargs)
            chunks, size = [], 0
            for chunk in response.iter_content(64 * 1024):
                size += len(chunk)
                if size > self.config.max_body_bytes:
                    raise BadPayload(f"{method} {urlsplit(url).path}: body larger than "
                                     f"{self.config.max_body_bytes} bytes")
                chunks.append(chunk)
            return response, b"".join(chunks)
        finally:
            _DEADLINE.reset(token)
            if response is not None:
                response.close()  # returns a fully read connection to the pool, else closes it

    @staticmethod
    def _retry_after(retry: Retry, response) -> float | None:
        try:
            return retry.get_retry_after(response.raw)
        except Exception:  # an unparsable Retry-After: fall back to our own backoff
            return None

    # -- classification ------------------------------------------------------

    @staticmethod
    def _check_deadline(deadline, started, where, phase):
        if time.monotonic() >= deadline:
            raise DeadlineExceeded(f"{where}: deadline of {deadline - started:.2f}s exceeded "
                                   f"{phase}")

    @staticmethod
    def _transport_error(exc, deadline, started, where) -> ProviderError:
        budget = deadline - started
        if time.monotonic() >= deadline - 0.001:
            return DeadlineExceeded(f"{where}: no complete answer within the {budget:.2f}s "
                                    f"deadline (server hung or too slow); connection dropped")
        text = str(exc)
        if isinstance(exc, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text:
            found = re.search(r"IncompleteRead\((\d+) bytes read, (\d+) more expected\)", text)
            detail = (f"got {found.group(1)} bytes, {found.group(2)} more were announced"
                      if found else "connection closed mid-body")
            return BadPayload(f"{where}: truncated body ({detail})")
        if isinstance(exc, requests.exceptions.SSLError):
            found = re.search(r"\[SSL: [A-Z_]+\] ([^(]+)", text)
            reason = found.group(1).strip() if found else "handshake failed"
            return ProviderError(f"{where}: TLS failure ({reason}); not retried")
        if isinstance(exc, (requests.Timeout, socket.timeout)):  # silent for a whole read timeout
            return DeadlineExceeded(f"{where}: timed out ({type(exc).__name__}) with "
                                    f"{deadline - time.monotonic():.2f}s of the deadline left")
        return ProviderError(f"{where}: connection failed ({type(exc).__name__})")

    @staticmethod
    def _status_error(response, body, where, secrets, retry_after) -> HttpStatusError:
        status = response.status_code
        note = f" (Retry-After {retry_after:g}s)" if retry_after is not None else ""
        text = excerpt(body, secrets)
        kind = "HTML error page" if _looks_like_html(body, response.headers.get(
            "Content-Type", "")) else "body"
        return HttpStatusError(f"{where}: HTTP {status} {response.reason or ''}{note}; {kind}: "
                               f"{text or '(empty)'}", status=status, excerpt=text,
                               retry_after=retry_after)

    def _pause(self, wait, deadline, error):
        remaining = deadline - time.monotonic()
        if wait >= remaining:
            error.args = (f"{error.args[0]}; not retried: waiting {wait:.2f}s would pass the "
                          f"deadline ({max(remaining, 0):.2f}s left)",)
            raise error
        log.warning("%s; retrying in %.2fs", error, wait)
        if wait > 0:
            self._sleep(wait)

    @staticmethod
    def _decode(body: bytes, response, where, secrets) -> Any:
        status = response.status_code
        if not body.strip():
            raise BadPayload(f"{where}: empty body (HTTP {status}), expected JSON")
        if _looks_like_html(body, response.headers.get("Content-Type", "")):
            raise BadPayload(f"{where}: expected JSON, got an HTML page (HTTP {status}): "
                             f"{excerpt(body, secrets)}")
        try:
            return json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadPayload(f"{where}: invalid JSON ({exc.msg} at byte {exc.pos}): "
                             f"{excerpt(body, secrets, 80)}") from None
        except ValueError:
            raise BadPayload(f"{where}: body is not UTF-8 JSON: {excerpt(body, secrets, 80)}") \
                from None
