"""What the API knows of the supervisor: worker rows over the control socket.

`StatusSource.rows()` asks mdwd for `status` at most once per `ttl` seconds,
whatever the request rate (one caller asks while concurrent callers keep
using the previous answer), and remembers a failure for `failure_ttl`, so a
dead or hung supervisor costs one attempt per few seconds, not one per
request, and never holds up more than the one request that asks. It raises
`SupervisorUnavailable` when mdwd cannot be reached or answers nonsense.

Staleness of the datasets (`stale_after`): a dataset is stale when it is older
than STALE_INTERVALS (3) intervals of the worker that writes it, found in the
status rows by kind (the largest interval if several workers share the kind).
When that is unknown - no such worker configured, or the supervisor
unreachable - the fixed fallback FALLBACK_STALE_AFTER_S (3 x 300 s = 900 s)
applies. `[api] stale_after = {watchlist = 300}` overrides it per dataset.

The retention of whale flows (`whale_retention_hours`, the longest `hours`
window /api/whale_flows serves): the whale_flows worker names its
`retention_days` in the counts of every successful cycle, and mdwd's status row
carries the last cycle (`last_cycle.counts.retention_days`). With several
whale_flows workers the smallest counts (each deletes what is older than its
own). A StatusSource remembers the last retention it saw, since a failed cycle
reports no counts and mdwd may be unreachable for a while; until it has seen
one, the embedded default applies (`retention_days` of workers/kinds.py, 7 days).

A dataset's age counts only time inside its writer's schedule (`schedules`,
workers/market_hours.py), so a weekend or a holiday never makes it stale.
The writer says its schedule in its status report (`reported.schedule`);
when no writer says one (none configured, not running, an older worker, the
supervisor unreachable) every moment counts, as for the simulated market.
Where several workers write one dataset, the schedule covering the most
time counts (always, then extended, then regular): the strictest.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable, Optional

from supervisor.shared.control_client import ControlError
from workers import market_hours
from workers.kinds import KINDS

__all__ = ["StatusSource", "SupervisorUnavailable", "DATASET_WRITER_KIND",
           "STALE_INTERVALS", "FALLBACK_STALE_AFTER_S", "stale_after", "schedules",
           "DEFAULT_WHALE_RETENTION_DAYS", "whale_retention_days"]

# dataset -> the worker kind that writes it
DATASET_WRITER_KIND = {
    "watchlist": "watchlist",
    "whale_flows": "whale_flows",
    "macd_scanner": "macd",
    "vpb_scanner": "vpb",
    "ttm_squeeze_scanner": "ttm",
    "cycle_scanner": "cycle_scanner",
    "key_levels": "market_structure",
    "skew_metrics": "market_structure",
    "oi_flows": "market_structure",
    "market_sentiment": "market_structure",
}
STALE_INTERVALS = 3
FALLBACK_STALE_AFTER_S = STALE_INTERVALS * 300.0
DEFAULT_WHALE_RETENTION_DAYS = float(KINDS["whale_flows"].options["retention_days"].default)
# The schedules by the time they cover, most first: where writers disagree, the first counts.
_WIDEST_FIRST = (market_hours.ALWAYS, market_hours.EXTENDED, market_hours.REGULAR)


class SupervisorUnavailable(Exception):
    """mdwd could not be asked (not running, socket missing, timeout, bad answer)."""


def stale_after(rows: Optional[list[dict]], overrides: Optional[dict] = None) -> dict[str, float]:
    """Per dataset, the age in seconds beyond which it is stale (see the module docstring)."""
    configured = {dataset: float(seconds) for dataset, seconds in (overrides or {}).items()}
    intervals: dict[str, float] = {}
    for row in rows or ():
        kind, interval = row.get("kind"), row.get("interval")
        if isinstance(interval, (int, float)) and not isinstance(interval, bool) and interval > 0:
            intervals[kind] = max(float(interval), intervals.get(kind, 0.0))
    return {dataset: configured.get(dataset, STALE_INTERVALS * intervals[kind] if kind in intervals
                                    else FALLBACK_STALE_AFTER_S)
            for dataset, kind in DATASET_WRITER_KIND.items()}


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


def schedules(rows: Optional[list[dict]]) -> dict[str, market_hours.Schedule]:
    """Per dataset, the schedule of the worker that writes it (see the module docstring)."""
    said: dict[str, set] = {}
    for row in rows or ():
        reported = row.get("reported")
        name = reported.get("schedule") if isinstance(reported, dict) else None
        said.setdefault(row.get("kind"), set()).add(name if name in market_hours.SCHEDULES else market_hours.ALWAYS)
    return {dataset: market_hours.schedule(next(n for n in _WIDEST_FIRST if n in said.get(kind, {market_hours.ALWAYS})))
            for dataset, kind in DATASET_WRITER_KIND.items()}


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
