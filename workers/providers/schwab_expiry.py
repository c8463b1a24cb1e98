"""Warn before the Schwab refresh token dies: a warning text, a gauge's value, a log line an hour.

The refresh token dies 7 days after its login (schwab_tokens). From
`warn_before` seconds before that, and until a new login replaces it (or for
ever, when the token file does not say when it was issued), `warnings()`
returns one text naming the login command. The scanners put it in their
status reports, so the supervisor shows it in its STATUS line, `mdwctl
status` and /health. Every worker process computes the same text from the
same file, so the supervisor shows it once.

The text is also logged, at most once per LOG_EVERY_S for all the processes
sharing the token file: the wall time of the last such line is kept beside
it (`<token file>.warned`), claimed under an flock taken without waiting, so
five scanners do not log it five times an hour.

`seconds_left(path)` is what /metrics exports as
mdw_schwab_refresh_token_expiry_seconds (negative once the token is dead).
"""
from __future__ import annotations

import datetime as dt
import errno
import fcntl
import logging
import os
import time
from typing import Callable

from .base import AuthError
from .schwab_tokens import LOGIN_COMMAND, TokenFile, Tokens

log = logging.getLogger(__name__)

LOG_EVERY_S = 3600.0
DEFAULT_WARN_BEFORE_S = 2 * 24 * 3600.0


def span(seconds: float) -> str:
    """A duration for people: '3 days 4 h', '5 h 12 min', '12 min'."""
    minutes = int(max(seconds, 0) // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return f"{days} day{'s' if days > 1 else ''} {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def utc(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def seconds_left(path: str, wall_clock: Callable[[], float] = time.time) -> float | None:
    """Seconds until the refresh token in `path` dies; None if the file is missing, broken or
    does not say when its refresh token was issued."""
    try:
        expires = TokenFile(path).load().refresh_expires_at
    except AuthError:
        return None
    return None if expires is None else expires - wall_clock()


class ExpiryWatch:
    """The warning for one token file, and its hourly log line."""

    def __init__(self, token_path: str, warn_before_s: float = DEFAULT_WARN_BEFORE_S, *,
                 wall_clock: Callable[[], float] = time.time, log_every_s: float = LOG_EVERY_S):
        self.token_path = token_path
        self.warn_before_s = warn_before_s
        self.log_every_s = log_every_s
        self._wall = wall_clock
        self._marker = token_path + ".warned"

    def warnings(self, tokens: Tokens) -> list[str]:
        """[] while the refresh token has more than warn_before left, else [the warning]."""
        text = self.warning(tokens)
        if text is None:
            return []
        self._log_hourly(text)
        return [text]

    def warning(self, tokens: Tokens) -> str | None:
        expires, now = tokens.refresh_expires_at, self._wall()
        if expires is None:
            return (f"the Schwab token file {os.path.basename(self.token_path)} does not say when "
                    f"its refresh token was issued (it dies 7 days after its login): run "
                    f"{LOGIN_COMMAND} so the service can warn in time")
        if expires - now > self.warn_before_s:
            return None
        if expires > now:
            return (f"the Schwab refresh token expires in {span(expires - now)} ({utc(expires)}): "
                    f"run {LOGIN_COMMAND}")
        return (f"the Schwab refresh token expired {span(now - expires)} ago ({utc(expires)}): "
                f"run {LOGIN_COMMAND}")

    def _log_hourly(self, text: str) -> None:
        """Log `text` unless some process sharing the token file did within log_every_s."""
        try:
            fd = os.open(self._marker, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            log.warning("%s (cannot record this warning's time in %s: %s)", text, self._marker,
                        exc.strerror)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return  # another process is logging it right now
            raise
        try:
            last = _float(os.pread(fd, 64, 0))
            now = self._wall()
            if last is None or not 0 <= now - last < self.log_every_s:
                log.warning("%s", text)
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{now!r}\n".encode(), 0)
        finally:
            os.close(fd)  # releases the flock


def _float(data: bytes) -> float | None:
    try:
        return float(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return None
