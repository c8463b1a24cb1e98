"""Schwab OAuth2 access tokens: refresh before expiry and after a 401; back off when refused.

The token file (its shapes and private atomic writes: schwab_tokens) is
shared by every worker process. A refresh takes an exclusive flock on
`<token file>.lock` (polled with LOCK_NB, so it is bounded by the caller's
deadline), re-reads the file, and only calls Schwab if no other process
refreshed meanwhile. The app key and secret are read when a refresh needs
them (schwab_credentials: the environment or [provider] secrets_file).

When Schwab refuses a refresh (400/403: the refresh token expired or was
revoked; 401: the app key or secret is wrong), the refusal is recorded
beside the token file (`<token file>.refused`: why, when to ask again, and
a fingerprint of the refresh token and credentials it was about). Until
then every process sharing the file fails at once with the same reason,
naming the login command, without asking Schwab: five scanners do not each
hit the token endpoint every cycle. The wait starts at REFUSAL_BACKOFF_S and
doubles up to REFUSAL_BACKOFF_MAX_S; a new login (or new credentials)
changes the fingerprint, so the next request asks again at once.

`expires_at`, the issue time and the refusal times are wall clock (epoch
seconds): they must survive restarts and are shared between processes.
Tokens and the app secret never appear in logs, reprs or exception messages.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import time
from typing import Callable

from .base import AuthError, DeadlineExceeded, HttpStatusError
from .http import HttpClient, redact
from .schwab_credentials import AppCredentials
from .schwab_expiry import utc
from .schwab_tokens import LOGIN_COMMAND, TokenFile, Tokens, write_private

log = logging.getLogger(__name__)

REFUSAL_BACKOFF_S = 300.0
REFUSAL_BACKOFF_MAX_S = 3600.0
TOKEN_PATH = "/v1/oauth/token"


class CredentialsRefused(AuthError):
    """The token endpoint answered 401: it does not accept the app key and secret."""


def post_token_form(http: HttpClient, token_url: str, credentials: AppCredentials, form: dict,
                    deadline: float, secrets: tuple[str, ...]) -> dict:
    """POST `form` to Schwab's token endpoint with HTTP Basic (app key, secret); the answer, checked
    to hold access_token and expires_in. CredentialsRefused on a 401; other HTTP errors are the
    caller's to explain (oauth_error)."""
    secrets = secrets + (credentials.key, credentials.secret)
    try:
        answer = http.request_json("POST", token_url, deadline=deadline, use_budget=False,
                                   secrets=secrets, data=form,
                                   auth=(credentials.key, credentials.secret))
    except AuthError:
        raise CredentialsRefused(f"Schwab refused the app key and secret (invalid_client) from "
                                 f"{credentials.source}: check them against the app on "
                                 f"developer.schwab.com") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str) \
            or not isinstance(answer.get("expires_in"), (int, float)):
        keys = sorted(answer) if isinstance(answer, dict) else type(answer).__name__
        raise AuthError(f"Schwab token endpoint answered without access_token/expires_in "
                        f"(got {redact(str(keys), secrets)})")
    return answer


def oauth_error(exc: HttpStatusError) -> str:
    """The OAuth error code in a refusal's body (invalid_grant, ...), else its HTTP status."""
    for code in ("invalid_grant", "invalid_client", "invalid_request", "unauthorized_client",
                 "unsupported_grant_type"):
        if code in exc.excerpt:
            return code
    return f"HTTP {exc.status}"


class Refusals:
    """The token endpoint's last refusal, shared through a file by every process using the token."""

    def __init__(self, path: str, wall_clock: Callable[[], float]):
        self.path = path
        self._wall = wall_clock

    @staticmethod
    def fingerprint(tokens: Tokens, credentials: AppCredentials) -> str:
        material = "\0".join((credentials.key, credentials.secret, tokens.refresh_token))
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def _read(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                record = json.load(f)
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def check(self, fingerprint: str) -> None:
        """AuthError with the recorded reason while a refusal of the same tokens is in its wait."""
        record = self._read()
        retry_at = record.get("retry_at")
        if record.get("fingerprint") != fingerprint or not isinstance(retry_at, (int, float)) \
                or self._wall() >= retry_at:
            return
        raise AuthError(self.message(str(record.get("reason")), retry_at))

    @staticmethod
    def message(reason: str, retry_at: float) -> str:
        return f"{reason} (Schwab is not asked again before {utc(retry_at)}, or until a new login)"

    def record(self, fingerprint: str, reason: str) -> str:
        """Record a refusal; the message every process fails with until its wait is over."""
        previous = self._read()
        count = previous.get("count") if previous.get("fingerprint") == fingerprint else 0
        count = count + 1 if isinstance(count, int) and count > 0 else 1
        wait = min(REFUSAL_BACKOFF_MAX_S, REFUSAL_BACKOFF_S * 2 ** min(count - 1, 16))
        now = self._wall()
        record = {"fingerprint": fingerprint, "reason": reason, "count": count,
                  "refused_at": now, "retry_at": now + wait}
        try:
            write_private(self.path, json.dumps(record).encode())
        except OSError as exc:
            log.warning("cannot record the Schwab token refusal in %s (%s): every process will "
                        "ask again", self.path, exc.strerror)
        log.error("%s; not asking Schwab again for %.0f s", reason, wait)
        return self.message(reason, now + wait)

    def clear(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class SchwabAuth:
    """Hands out a valid access token; refreshes it before expiry or when told it was rejected."""

    def __init__(self, http: HttpClient, *, token_path: str | os.PathLike,
                 credentials: Callable[[], AppCredentials], auth_url: str,
                 refresh_margin_s: float = 120.0, wall_clock: Callable[[], float] = time.time,
                 lock_poll_s: float = 0.01):
        self.http = http
        self.file = TokenFile(token_path)
        self.token_url = auth_url.rstrip("/") + TOKEN_PATH
        self._credentials_source = credentials
        self._credentials: AppCredentials | None = None
        self.refresh_margin_s = refresh_margin_s
        self._wall = wall_clock
        self._lock_poll_s = lock_poll_s
        self.refusals = Refusals(self.file.path + ".refused", wall_clock)
        self._tokens: Tokens | None = None
        self._stamp: tuple[int, int] | None = None

    def __repr__(self):
        return f"SchwabAuth(token_path={self.file.path!r})"

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in messages (for `redact`)."""
        tokens, credentials = self._tokens, self._credentials
        found = (credentials.secret, credentials.key) if credentials else ()
        return found + ((tokens.access_token, tokens.refresh_token) if tokens else ())

    def tokens(self) -> Tokens:
        """The tokens in the file (re-read when it changed); AuthError if it cannot be used."""
        return self._current()

    def access_token(self, deadline: float) -> str:
        tokens = self._current()
        return tokens.access_token if self._valid(tokens) else self.refresh(deadline)

    def refresh(self, deadline: float, rejected: str | None = None) -> str:
        """Get a new access token, unless another process already replaced `rejected`.

        AuthError at once, without asking Schwab, while a refusal of these tokens is recorded."""
        credentials = self._credentials = self._credentials_source()
        self.refusals.check(Refusals.fingerprint(self._current(), credentials))
        lock_fd = self._lock(deadline)
        try:
            tokens = self._current(force=True)
            if self._valid(tokens) and tokens.access_token != rejected:
                return tokens.access_token  # another process refreshed while we waited
            fingerprint = Refusals.fingerprint(tokens, credentials)
            self.refusals.check(fingerprint)  # another process was refused while we waited
            tokens = self._request_new(tokens, credentials, fingerprint, deadline)
            self.file.save(tokens)
            self._remember(tokens)
            self.refusals.clear()
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

    def _request_new(self, tokens: Tokens, credentials: AppCredentials, fingerprint: str,
                     deadline: float) -> Tokens:
        secrets = self.secrets() + (tokens.refresh_token, tokens.access_token)
        form = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        try:
            answer = post_token_form(self.http, self.token_url, credentials, form, deadline,
                                     secrets)
        except CredentialsRefused as exc:
            raise AuthError(self.refusals.record(fingerprint, str(exc))) from None
        except HttpStatusError as exc:
            if exc.status not in (400, 403):
                raise
            reason = (f"Schwab refused the refresh token ({oauth_error(exc)}): it expired or was "
                      f"revoked (a refresh token lasts 7 days from its login); run "
                      f"{LOGIN_COMMAND}")
            raise AuthError(self.refusals.record(fingerprint, reason)) from None
        refresh = answer.get("refresh_token") or tokens.refresh_token
        issued = tokens.refresh_issued_at if refresh == tokens.refresh_token else self._wall()
        return Tokens(answer["access_token"], refresh, self._wall() + float(answer["expires_in"]),
                      tokens.document, issued)
