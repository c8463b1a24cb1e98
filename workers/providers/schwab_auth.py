"""Schwab OAuth2 tokens: the token file, refresh before expiry and after a 401.

The token file is JSON. Written by us it is flat:

    {"access_token": "...", "refresh_token": "...", "expires_at": 1767225600.0,
     "token_type": "Bearer", "scope": "api"}

schwab-py's format (the same fields nested under "token", plus
"creation_timestamp") is read too, and written back in the same shape, so a
file created by its login flow keeps working with both. `expires_at` is wall
clock (epoch seconds) because it must survive restarts and is shared between
processes; it is the one place this package uses time.time().

Writes are atomic (temp file in the same directory, fsync, rename, fsync of the
directory) with mode 0600. Several worker processes share one file: a refresh
takes an exclusive flock on `<token file>.lock` (polled with LOCK_NB, so it is
bounded by the caller's deadline), re-reads the file, and only calls Schwab if
no other process refreshed meanwhile.

Tokens and the app secret never appear in logs, reprs or exception messages.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import tempfile
import time
from typing import Callable

from .base import AuthError, DeadlineExceeded, HttpStatusError
from .http import HttpClient, redact

log = logging.getLogger(__name__)


class Tokens:
    """The current tokens plus the file's document (to write back in its own shape)."""

    __slots__ = ("access_token", "refresh_token", "expires_at", "document")

    def __init__(self, access_token: str, refresh_token: str, expires_at: float, document: dict):
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.expires_at = expires_at
        self.document = document

    def __repr__(self):
        return f"Tokens(expires_at={self.expires_at:.0f}, access_token=<redacted>)"


class TokenFile:
    def __init__(self, path: str | os.PathLike):
        self.path = os.path.abspath(os.fspath(path))

    def load(self) -> Tokens:
        try:
            with open(self.path, encoding="utf-8") as f:
                document = json.load(f)
        except FileNotFoundError:
            raise AuthError(f"Schwab token file {self.path} not found: run the Schwab login "
                            f"flow to create it") from None
        except (OSError, ValueError) as exc:
            raise AuthError(f"Schwab token file {self.path} is unreadable "
                            f"({type(exc).__name__})") from None
        if not isinstance(document, dict):
            raise AuthError(f"Schwab token file {self.path} does not hold a JSON object")
        holder = document["token"] if isinstance(document.get("token"), dict) else document
        refresh = holder.get("refresh_token")
        if not isinstance(refresh, str) or not refresh:
            raise AuthError(f"Schwab token file {self.path} has no refresh_token: run the "
                            f"Schwab login flow again")
        access = holder.get("access_token")
        expires_at = holder.get("expires_at")
        return Tokens(access if isinstance(access, str) else "", refresh,
                      float(expires_at) if isinstance(expires_at, (int, float)) else 0.0,
                      document)

    def save(self, tokens: Tokens) -> None:
        document = dict(tokens.document)
        nested = isinstance(document.get("token"), dict)
        holder = dict(document["token"]) if nested else document
        holder.update(access_token=tokens.access_token, refresh_token=tokens.refresh_token,
                      expires_at=tokens.expires_at)
        if nested:
            document["token"] = holder
        directory = os.path.dirname(self.path)
        fd, temp = tempfile.mkstemp(prefix=".schwab-token-", dir=directory)  # mode 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(document, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            raise
        dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        tokens.document = document


class SchwabAuth:
    """Hands out a valid access token; refreshes it before expiry or when told it was rejected."""

    def __init__(self, http: HttpClient, *, token_path: str | os.PathLike, app_key: str,
                 app_secret: str, auth_url: str, refresh_margin_s: float = 120.0,
                 wall_clock: Callable[[], float] = time.time, lock_poll_s: float = 0.01):
        self.http = http
        self.file = TokenFile(token_path)
        self.token_url = auth_url.rstrip("/") + "/v1/oauth/token"
        self._app_key, self._app_secret = app_key, app_secret
        self.refresh_margin_s = refresh_margin_s
        self._wall = wall_clock
        self._lock_poll_s = lock_poll_s
        self._tokens: Tokens | None = None
        self._stamp: tuple[int, int] | None = None

    def __repr__(self):
        return f"SchwabAuth(token_path={self.file.path!r})"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in messages (for `redact`)."""
        tokens = self._tokens
        found = (self._app_secret, self._app_key)
        return found + ((tokens.access_token, tokens.refresh_token) if tokens else ())

    def access_token(self, deadline: float) -> str:
        tokens = self._current()
        return tokens.access_token if self._valid(tokens) else self.refresh(deadline)

    def refresh(self, deadline: float, rejected: str | None = None) -> str:
        """Get a new access token, unless another process already replaced `rejected`."""
        if not self._app_key or not self._app_secret:
            raise AuthError("Schwab app key/secret not configured (app_key, app_secret or "
                            "SCHWAB_APP_KEY, SCHWAB_APP_SECRET)")
        lock_fd = self._lock(deadline)
        try:
            tokens = self._current(force=True)
            if self._valid(tokens) and tokens.access_token != rejected:
                return tokens.access_token  # another process refreshed while we waited
            tokens = self._request_new(tokens, deadline)
            self.file.save(tokens)
            self._remember(tokens)
            log.info("Schwab access token refreshed; valid for %.0fs",
                     tokens.expires_at - self._wall())
            return tokens.access_token
        finally:
            os.close(lock_fd)

    # -- internals ---------------------------------------------------------

    def _valid(self, tokens: Tokens) -> bool:
        margin = self.refresh_margin_s
        return bool(tokens.access_token) and tokens.expires_at - margin > self._wall()

    def _current(self, force: bool = False) -> Tokens:
        """The cached tokens, re-read when the file changed (another process refreshed)."""
        try:
            st = os.stat(self.file.path)
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if force or self._tokens is None or stamp != self._stamp:
            self._tokens, self._stamp = self.file.load(), stamp
        return self._tokens

    def _remember(self, tokens: Tokens) -> None:
        st = os.stat(self.file.path)
        self._tokens, self._stamp = tokens, (st.st_mtime_ns, st.st_ino)

    def _lock(self, deadline: float) -> int:
        fd = os.open(self.file.path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    os.close(fd)
                    raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                os.close(fd)
                raise DeadlineExceeded("deadline passed while another process was refreshing "
                                       "the Schwab token")
            time.sleep(min(self._lock_poll_s, remaining))

    def _request_new(self, tokens: Tokens, deadline: float) -> Tokens:
        secrets = self.secrets() + (tokens.refresh_token, tokens.access_token)
        try:
            answer = self.http.request_json(
                "POST", self.token_url, deadline=deadline, use_budget=False, secrets=secrets,
                data={"grant_type": "refresh_token", "refresh_token": tokens.refresh_token},
                auth=(self._app_key, self._app_secret))
        except AuthError:
            raise AuthError("Schwab token refresh rejected the app credentials "
                            "(invalid_client): check app_key/app_secret") from None
        except HttpStatusError as exc:
            if exc.status in (400, 403):
                code = "invalid_grant" if "invalid_grant" in exc.excerpt else f"HTTP {exc.status}"
                raise AuthError(f"Schwab token refresh rejected ({code}): the refresh token has "
                                f"expired or was revoked (they last 7 days); run the Schwab "
                                f"login flow again") from None
            raise
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str) \
                or not isinstance(answer.get("expires_in"), (int, float)):
            keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
            raise AuthError(f"Schwab token endpoint answered without access_token/expires_in "
                            f"(got {redact(str(keys), secrets)})")
        refresh = answer.get("refresh_token") or tokens.refresh_token
        return Tokens(answer["access_token"], refresh, self._wall() + float(answer["expires_in"]),
                      tokens.document)
