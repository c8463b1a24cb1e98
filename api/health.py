"""What /health calls a problem: unhealthy wanted workers, their warnings, stale or never-written
datasets, and unreachable parts. A dataset's age, and its writer's time to write it first, count
only inside the writer's schedule (api/status.py): a weekend or a holiday is never a problem."""
from __future__ import annotations

import datetime
from typing import Optional

from workers import market_hours
from workers.store import StoreError

from .status import DATASET_WRITER_KIND, SupervisorUnavailable, schedules

__all__ = ["health_problems"]


def health_problems(reader, status, now) -> list[str]:
    """Why the service is degraded: unhealthy wanted workers, stale or never-written datasets,
    unreachable parts. A dataset's age, and its writer's time to write it first, count only
    inside the writer's schedule (api/status.py): a weekend or a holiday is never a problem."""
    problems = []
    try:
        rows = status.rows()
    except SupervisorUnavailable as exc:
        problems.append(f"supervisor unreachable: {exc}")
        rows = None
    for row in rows or ():
        if row.get("wanted", True) and row.get("healthy") is not True:
            problems.append(f"worker {row.get('name')} is not healthy: {_worker_state(row)}")
    for warning in dict.fromkeys(w for row in rows or () if row.get("wanted", True)
                                 for w in (row.get("warnings") or ()) if isinstance(w, str)):
        problems.append(f"warning: {warning}")
    limits, by_dataset = status.limits(rows), schedules(rows)
    try:
        updates = reader.last_update(stale_after=limits, schedules=by_dataset)
    except StoreError as exc:
        problems.append(f"store unreadable: {exc}")
        updates = {}
    for dataset, entry in updates.items():
        schedule = by_dataset[dataset]
        within = "" if schedule.name == market_hours.ALWAYS else f" within its schedule, {schedule.name}"
        if entry is not None and entry["stale"]:
            problems.append(f"dataset {dataset} is stale: last written {entry['age_s']:.0f}s ago "
                            f"(limit {limits[dataset]:.0f}s{within})")
        elif entry is None and (writer := _overdue_writer(dataset, rows, schedule, now)):
            problems.append(f"dataset {dataset} has never been written: its worker {writer['name']} has been "
                            f"supervised for {writer['supervised_s']:.0f}s (startup_timeout + interval "
                            f"{writer['startup_timeout'] + writer['interval']:g}s{within})")
    return problems


def _overdue_writer(dataset: str, rows: Optional[list], schedule, now) -> Optional[dict]:
    """The worker that should have written `dataset` by now (startup_timeout + one interval
    inside its schedule), if any."""
    kind = DATASET_WRITER_KIND.get(dataset)
    for row in rows or ():
        try:
            due = float(row["startup_timeout"]) + float(row["interval"])
            supervised = float(row["supervised_s"])
            if row.get("kind") == kind and row.get("wanted", True) and supervised >= due and \
                    schedule.open_seconds(now - datetime.timedelta(seconds=supervised), now) >= due:
                return row
        except (KeyError, TypeError, ValueError, OverflowError):
            continue  # a row from an older supervisor: it cannot tell
    return None


def _worker_state(row: dict) -> str:
    if row.get("problem"):
        return str(row["problem"])
    text = str(row.get("state"))
    last_exit = row.get("last_exit")
    if isinstance(last_exit, dict) and last_exit.get("reason"):
        text += f" (last exit: {last_exit['reason']}"
        if last_exit.get("detail"):
            text += f", {last_exit['detail']}"
        text += ")"
    return text
