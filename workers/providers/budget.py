"""Cross-process request budget: one token bucket in a small file, guarded by flock.

Schwab allows 120 market-data requests per minute for the whole app, and the
scanners are separate processes forked by the supervisor. Every process that
talks to Schwab opens the same bucket file under the state dir and takes one
token per HTTP attempt (retries included).

Why a shared file and not the alternatives:
- Fixed shares (120 / N per process) waste most of the budget: the scanners run
  at different times (watchlist every few minutes, MACD/VPB/TTM hourly), so a
  fixed split leaves an idle scanner's share unused while a busy one starves,
  and the split must change whenever a worker is added.
- The supervisor handing out tokens (a pipe or socket per child) puts a
  request/answer round trip through the supervisor loop on every HTTP call and
  makes the supervisor a dependency of data fetching: a slow or restarting
  supervisor would stall every scanner. The supervisor's job is to stay simple
  and responsive (STYLE.md).
- A file plus flock is a few microseconds per request, needs no extra process,
  survives any worker crashing (the kernel drops a dead holder's lock), and
  works for processes the supervisor did not fork (a manual CLI run).

The clock is `time.monotonic()`: on Linux it is CLOCK_MONOTONIC, one clock for
every process since boot, and immune to wall-clock steps. A stamp from the
future (the file survived a reboot) or an unreadable record resets the bucket
to EMPTY, the conservative choice; a brand-new file starts full.

Guarantee. The bucket holds at most `burst` tokens and refills at
`(limit - burst) / window_s` per second, so in ANY window of `window_s` seconds
at most `burst + (limit - burst) = limit` tokens are granted. Defaults: limit
120 per 60 s with burst 10, i.e. a sustained 110/min with room for a burst.

`acquire(deadline)` never blocks past `deadline` (a `time.monotonic()` value):
it polls the lock with LOCK_NB (holders keep it for microseconds) and, when the
bucket is empty, sleeps until the next refill only if that refill comes before
the deadline; otherwise it raises BudgetExhausted at once rather than burn the
caller's remaining time. The file is opened per acquire, so a provider created
before fork() never shares a lock-holding open file description with its child.
"""
from __future__ import annotations

import errno
import fcntl
import math
import os
import struct
import time
from typing import Callable

from .base import BudgetExhausted

_MAGIC = b"MDWBKT01"
_RECORD = struct.Struct("<8sdd")  # magic, tokens, stamp (monotonic seconds)


class RequestBudget:
    """A token bucket shared by every process that opens the same `path`."""

    def __init__(self, path: str | os.PathLike, *, limit: int = 120, window_s: float = 60.0,
                 burst: int = 10, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, poll_s: float = 0.002):
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        if not 1 <= burst < limit:
            raise ValueError(f"burst must be in 1..{limit - 1} so that some budget refills")
        self.path = os.fspath(path)
        self.limit = limit
        self.window_s = window_s
        self.burst = burst
        self.rate = (limit - burst) / window_s
        self._clock = clock
        self._sleep = sleep
        self._poll_s = poll_s
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), mode=0o700, exist_ok=True)

    def acquire(self, deadline: float) -> float:
        """Take one token; return the monotonic time it was granted.

        Raises BudgetExhausted if no token can be had before `deadline`."""
        while True:
            outcome, value = self._try_take()
            if outcome == "granted":
                return value
            remaining = deadline - self._clock()
            if outcome == "busy":  # another process is inside its few-microsecond update
                if remaining <= 0:
                    raise BudgetExhausted(f"request budget {self.path}: lock held by another "
                                          f"process until the deadline")
                self._sleep(min(self._poll_s, remaining))
                continue
            if value > remaining:  # "empty": value is the time until the next token
                raise BudgetExhausted(
                    f"request budget exhausted ({self.limit} per {self.window_s:g}s shared by all "
                    f"workers): next token in {value:.2f}s, only {max(remaining, 0.0):.2f}s left "
                    f"before the deadline")
            self._sleep(value)

    # -- internals ---------------------------------------------------------

    def _try_take(self) -> tuple[str, float]:
        """("granted", grant time), ("busy", 0) if the lock is held, ("empty", seconds to wait)."""
        fd = self._open()
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    return "busy", 0.0
                raise
            now = self._clock()
            tokens = self._refill(fd, now)
            if tokens >= 1.0 - 1e-9:  # tolerate float rounding of a refill that is due
                self._write(fd, max(tokens - 1.0, 0.0), now)
                return "granted", now
            self._write(fd, tokens, now)
            return "empty", max((1.0 - tokens) / self.rate, 1e-6)
        finally:
            os.close(fd)  # also releases the flock

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def _refill(self, fd: int, now: float) -> float:
        raw = os.pread(fd, _RECORD.size, 0)
        if not raw:
            return float(self.burst)  # brand-new bucket
        try:
            magic, tokens, stamp = _RECORD.unpack(raw)
        except struct.error:
            magic, tokens, stamp = b"", 0.0, now
        if (magic != _MAGIC or not math.isfinite(tokens) or not math.isfinite(stamp)
                or stamp > now or tokens < 0):
            return 0.0  # corrupt or from before a reboot: start empty
        return min(float(self.burst), tokens + (now - stamp) * self.rate)

    @staticmethod
    def _write(fd: int, tokens: float, now: float) -> None:
        os.pwrite(fd, _RECORD.pack(_MAGIC, tokens, now), 0)
