"""Live upstream fetches made by the API itself (/api/key_levels off the stored universe, /api/market_snapshot).

One at a time across every serving process: a fetch holds an exclusive lock on `live-fetch.lock` in
state_dir (flock, taken without waiting), so a second request while one runs is answered 503 at once
instead of piling threads up behind the provider. Every fetch has a total deadline, `calls` x
request_timeout + DEADLINE_SLACK_S: the work runs in its own thread, and a request whose work has not
finished by then is answered 504; that thread keeps the lock until the provider returns (each real
provider bounds its own calls by request_timeout; the simulated market's `sim_hang_symbols` never
return, so on it a hung fetch keeps the live endpoints answering 503 until the API restarts).

The provider is opened lazily, in the serving process, on the first live request, from the same
[provider] table as the scanners: its calls take tokens from the same shared request budget. The API
holds no Schwab app secret (kinds.py: the api kind sees only MDW_API_TOKEN), so on Schwab it uses the
access token the scanners keep fresh in the token file; once that expires unrefreshed (outside the
scanners' schedule) a live answer is 503 naming the login error.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
from typing import Any, Callable, Optional

from workers.providers.base import (AuthError, BudgetExhausted, CircuitOpen, DeadlineExceeded, HttpStatusError,
                                    ProviderError)

DEADLINE_SLACK_S = 2.0
LOCK_FILE = "live-fetch.lock"


class LiveUnavailable(Exception):
    """A live fetch cannot be answered now: `status` (503 busy or the provider down, 504 deadline)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class NotFound(Exception):
    """The provider does not know the symbol, or it has no such expiration."""


def classify(error: ProviderError) -> Exception:
    """A provider's failure as the answer it deserves: NotFound about the item, LiveUnavailable otherwise."""
    if isinstance(error, DeadlineExceeded):
        return LiveUnavailable(504, f"the provider did not answer in time: {error}")
    if isinstance(error, (AuthError, BudgetExhausted, CircuitOpen)) or \
            (isinstance(error, HttpStatusError) and (error.status == 429 or error.status >= 500)):
        return LiveUnavailable(503, f"the provider cannot answer now: {error}")
    return NotFound(str(error))


class LiveMarket:
    def __init__(self, open_provider: Callable[[], Any], state_dir: str, request_timeout: float):
        self._open_provider = open_provider
        self._provider = None
        self._opening = threading.Lock()
        self.lock_path = os.path.join(state_dir, LOCK_FILE)
        self.request_timeout = float(request_timeout)

    def provider(self):
        with self._opening:
            if self._provider is None:
                self._provider = self._open_provider()
            return self._provider

    def deadline(self, calls: int) -> float:
        return calls * self.request_timeout + DEADLINE_SLACK_S

    def run(self, calls: int, work: Callable[[Any, float], Any]) -> Any:
        """`work(provider, request_timeout)`, making at most `calls` provider calls, within the deadline.
        Raises LiveUnavailable (busy, down, too slow) or NotFound; anything else `work` raises, as is."""
        fd = self._lock()
        outcome: dict[str, Any] = {}

        def fetch():
            try:
                outcome["value"] = work(self.provider(), self.request_timeout)
            except BaseException as exc:  # handed to the request's thread, which raises it
                outcome["error"] = exc
            finally:
                os.close(fd)  # releases the lock, whenever the provider returns

        thread = threading.Thread(target=fetch, name="mdw-live-fetch", daemon=True)
        try:
            thread.start()
        except BaseException:
            os.close(fd)
            raise
        limit = self.deadline(calls)
        thread.join(limit)
        if thread.is_alive():
            raise LiveUnavailable(504, f"the live fetch did not finish within its deadline ({limit:g}s: {calls} "
                                       f"request(s) of request_timeout {self.request_timeout:g}s); it is abandoned")
        error: Optional[BaseException] = outcome.get("error")
        if isinstance(error, ProviderError):
            raise classify(error) from error
        if error is not None:
            raise error
        return outcome["value"]

    def _lock(self) -> int:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LiveUnavailable(503, "another live fetch is running (one at a time); try again shortly") \
                    from None
            raise
        return fd


def from_config(section: dict, state_dir: str) -> Optional[LiveMarket]:
    """The API's live market over the [provider] table (None without one)."""
    if section is None:
        return None
    from workers.scanner import open_provider

    return LiveMarket(lambda: open_provider(section, state_dir), state_dir,
                      float(section.get("request_timeout", 10.0)))
