"""What the API knows of the supervisor: worker rows over the control socket.

`StatusSource.rows()` asks mdwd for `status` at most once per `ttl` seconds,
whatever the request rate (one caller asks while concurrent callers keep
using the previous answer), and remembers a failure for `failure_ttl`, so a
dead or hung supervisor costs one attempt per few seconds, not one per
request, and never holds up more than the one request that asks. It raises
`SupervisorUnavailable` when mdwd cannot be reached or answers nonsense.

Staleness of the datasets (`stale_after`, `schedules`) is workers/freshness.py's
rule, shared with the alerts worker; it is re-exported here for the API.

The retention of whale flows (`whale_retention_hours`, the longest `hours`
window /api/whale_flows serves): the whale_flows worker names its
`retention_days` in the counts of every successful cycle, and mdwd's status row
carries the last cycle (`last_cycle.counts.retention_days`). With several
whale_flows workers the smallest counts (each deletes what is older than its
own). A StatusSource remembers the last retention it saw, since a failed cycle
reports no counts and mdwd may be unreachable for a while; until it has seen
one, the embedded default applies (`retention_days` of workers/kinds.py, 7 days).
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Optional

from supervisor.shared.control_client import ControlError
from workers.freshness import (DATASET_WRITER_KIND, FALLBACK_STALE_AFTER_S, STALE_INTERVALS,  # noqa: F401
                               schedules, stale_after)
from workers.kinds import KINDS

__all__ = ["StatusSource", "SupervisorUnavailable", "DATASET_WRITER_KIND",
           "STALE_INTERVALS", "FALLBACK_STALE_AFTER_S", "stale_after", "schedules",
           "DEFAULT_WHALE_RETENTION_DAYS", "whale_retention_days"]

DEFAULT_WHALE_RETENTION_DAYS = float(KINDS["whale_flows"].options["retention_days"].default)


class SupervisorUnavailable(Exception):
    """mdwd could not be asked (not running, socket missing, timeout, bad answer)."""


def whale_retention_days(rows: Optional[list[dict]]) -> Optional[float]:
    """The retention the wanted whale_flows workers last reported (the smallest), or None if none did."""
    reported = []
    for row in rows or ():
        if row.get("kind") != DATASET_WRITER_KIND["whale_flows"] or not row.get("wanted", True):
            continue
        cycle = row.get("last_cycle")
        days = (cycle.get("counts") or {}).get("retention_days") if isinstance(cycle, dict) else None
        if isinstance(days, (int, float)) and not isinstance(days, bool) and 0 < days < math.inf:
            reported.append(float(days))
    return min(reported) if reported else None


class StatusSource:
    """Cached `status` answers of mdwd, and `restart` requests, through a ControlClient."""

    def __init__(self, client, ttl: float = 1.0, clock: Callable[[], float] = time.monotonic,
                 failure_ttl: Optional[float] = None, stale_overrides: Optional[dict] = None):
        self._client = client
        self.stale_overrides = dict(stale_overrides or {})
        self._ttl = float(ttl)
        self._failure_ttl = self._ttl if failure_ttl is None else float(failure_ttl)
        self._clock = clock
        self._lock = threading.Lock()
        self._expires = float("-inf")
        # (rows, None) or (None, error): replaced as a whole, so readers never see half an update.
        self._answer: Optional[tuple[Optional[list[dict]], Optional[str]]] = None
        self._whale_retention_days = DEFAULT_WHALE_RETENTION_DAYS  # the last one reported

    def rows(self) -> list[dict[str, Any]]:
        """The worker rows of the last answer; SupervisorUnavailable if it was a failure.

        Only one caller at a time asks mdwd; while it does, the others get the
        previous answer at once instead of queueing behind a slow supervisor
        (they wait only when there is no previous answer yet).
        """
        if self._clock() >= self._expires:
            if self._lock.acquire(blocking=self._answer is None):
                try:
                    if self._clock() >= self._expires:
                        self._refresh()
                finally:
                    self._lock.release()
        rows, error = self._answer
        if error is not None:
            raise SupervisorUnavailable(error)
        return rows

    def rows_or_none(self) -> Optional[list[dict[str, Any]]]:
        try:
            return self.rows()
        except SupervisorUnavailable:
            return None

    def stale_after(self) -> dict[str, float]:
        return self.limits(self.rows_or_none())

    def limits(self, rows: Optional[list[dict]]) -> dict[str, float]:
        """Staleness limits for these rows, with the configured overrides."""
        return stale_after(rows, self.stale_overrides)

    def whale_retention_hours(self) -> int:
        """The retention of whale flows in whole hours, rounded up (see the module docstring)."""
        days = whale_retention_days(self.rows_or_none())
        if days is not None:
            self._whale_retention_days = days
        return max(1, math.ceil(self._whale_retention_days * 24))

    def invalidate(self) -> None:
        self._expires = float("-inf")

    def _refresh(self) -> None:
        try:
            answer = self._client.call("status")
            rows = answer.get("workers") if isinstance(answer, dict) else None
            if not isinstance(answer, dict) or answer.get("ok") is not True:
                raise SupervisorUnavailable(f"mdwd refused the status request: {_why(answer)}")
            if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
                raise SupervisorUnavailable("mdwd answered status without a list of worker rows")
        except (ControlError, SupervisorUnavailable) as exc:
            self._answer = (None, str(exc))
            self._expires = self._clock() + self._failure_ttl
        else:
            self._answer = (rows, None)
            self._expires = self._clock() + self._ttl

    def restart(self, name: str, last=()) -> dict[str, Any]:
        """mdwd's answer to `restart` (which may say ok: false); SupervisorUnavailable if none.

        `last`: workers mdwd restarts only after the others run again (the API
        itself, when it asks for "all"); sent only when not empty.
        """
        extra = {"last": list(last)} if last else {}
        try:
            answer = self._client.call("restart", names=[name], **extra)
        except ControlError as exc:
            raise SupervisorUnavailable(str(exc)) from None
        finally:
            self.invalidate()
        if not isinstance(answer, dict):
            raise SupervisorUnavailable("mdwd answered restart with something that is not an object")
        return answer


def _why(answer: Any) -> str:
    if isinstance(answer, dict) and answer.get("error"):
        return str(answer["error"])
    return repr(answer)[:200]
