"""When a dataset is stale: the rule /health, /api/last_update, the page and the alerts share.

A dataset is stale when it is older than STALE_INTERVALS (3) intervals of the
worker that writes it, found in mdwd's status rows by kind (the largest interval
if several workers share the kind). When that is unknown - no such worker
configured, or the supervisor unreachable - the fixed fallback
FALLBACK_STALE_AFTER_S (3 x 300 s = 900 s) applies. `[api] stale_after =
{watchlist = 300}` overrides it per dataset.

A dataset's age counts only time inside its writer's schedule (`schedules`,
workers/market_hours.py), so a weekend or a holiday never makes it stale. The
writer says its schedule in its status report (`reported.schedule`); when no
writer says one (none configured, not running, an older worker, the supervisor
unreachable) every moment counts, as for the simulated market. Where several
workers write one dataset, the schedule covering the most time counts (always,
then extended, then regular): the strictest.
"""
from __future__ import annotations

from typing import Optional

from workers import market_hours

__all__ = ["DATASET_WRITER_KIND", "STALE_INTERVALS", "FALLBACK_STALE_AFTER_S", "stale_after", "schedules"]

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
# The schedules by the time they cover, most first: where writers disagree, the first counts.
_WIDEST_FIRST = (market_hours.ALWAYS, market_hours.EXTENDED, market_hours.REGULAR)


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


def schedules(rows: Optional[list[dict]]) -> dict[str, market_hours.Schedule]:
    """Per dataset, the schedule of the worker that writes it (see the module docstring)."""
    said: dict[str, set] = {}
    for row in rows or ():
        reported = row.get("reported")
        name = reported.get("schedule") if isinstance(reported, dict) else None
        said.setdefault(row.get("kind"), set()).add(name if name in market_hours.SCHEDULES else market_hours.ALWAYS)
    return {dataset: market_hours.schedule(next(n for n in _WIDEST_FIRST if n in said.get(kind, {market_hours.ALWAYS})))
            for dataset, kind in DATASET_WRITER_KIND.items()}
