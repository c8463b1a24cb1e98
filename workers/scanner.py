"""The loop every scanner worker shares: fetch per item (beating), scan, store, report.

A scan type supplies `cycle(self) -> counts`, built from `fetch_one` /
`fetch_each` (which beat before every upstream call, skip quarantined items
and record every outcome) and `store_snapshot` (one transaction). This module
owns the rest: the provider and store, the item a hung predecessor was
stuck on, the verdict on a cycle's failures, the reports to the supervisor,
and the idle wait between cycles.

- The item the supervisor hands over (what a killed predecessor was fetching,
  named exactly by its key) is quarantined the moment this process meets it
  again; a watchlist batch is split instead (workers/watchlist.py).
- A failure counts toward an item's quarantine only when it is about the
  item. When the provider as a whole is failing (dead login, spent budget,
  every request failing alike: workers/outcomes.py) the cycle fails at once,
  nothing is stored and nothing is quarantined.
- A failed cycle (nothing fetched, provider down, the store locked or full)
  is reported as failed and leaves the previous data served; the next cycle
  retries. A symbol that could not be fetched in an otherwise good cycle
  keeps its stored row, with the time it was really fetched.
- A cycle runs only inside the worker's schedule (its `schedule` option,
  workers/market_hours.py). Outside it the worker makes no upstream call: it
  reports a successful empty cycle ({"off_schedule": 1}) once per interval,
  since doing nothing is then its whole job (so the supervisor neither calls
  it failing nor restarts it as stalled: its rules stay the same for every
  kind), and idles, beating, until the next window opens. The status report
  carries the schedule, for the API's staleness.
"""
import logging
import os
import time

from workers import kinds, market_hours
from workers.outcomes import CycleTally
from workers.providers.base import ProviderError
from workers.quarantine import Quarantine
from workers.store import RowError, StoreError, StoreWriter

log = logging.getLogger("scanner")
SKIPPED, OK, FAILED = "skipped", "ok", "failed"


class CycleFailed(Exception):
    """This cycle produced nothing worth storing."""


class ProviderDown(CycleFailed):
    """The provider as a whole is failing; nothing of this cycle is stored or held against an item."""


def open_provider(section, state_dir):
    """The provider named by the [provider] config table, paired with its `fallback` if one is named."""
    provider = _open_kind(section.get("kind", "sim"), section, state_dir)
    if section.get("fallback"):
        from workers.providers.fallback import FallbackProvider

        return FallbackProvider(provider, _open_kind(section["fallback"], section, state_dir))
    return provider


def _open_kind(kind, section, state_dir):
    if kind == "sim":
        from workers.providers.sim import SimProvider

        return SimProvider(seed=int(section.get("sim_seed", 0)), hang=section.get("sim_hang_symbols", ()),
                           failing=section.get("sim_fail_symbols", ()))
    if kind == "schwab":
        from workers.providers.schwab import open_from_config

        return open_from_config(section, state_dir)
    if kind == "yahoo":
        from workers.providers.yahoo import open_from_config

        return open_from_config(section, state_dir)
    raise ValueError(f"provider.kind = {kind!r}: allowed is sim, schwab or yahoo")


class Scan:
    """Base of the scan types. Subclasses set `dataset` and implement `cycle()`."""

    dataset = None

    def __init__(self, ctx, provider, store, quarantine):
        self.ctx = ctx
        self.options = ctx.options
        self.provider = provider
        self.store = store
        self.quarantine = quarantine
        self.timeout = float(ctx.spec.sections.get("provider", {}).get("request_timeout", 10.0))
        self.requests = {}  # outcome -> provider calls, this incarnation
        self.tally = CycleTally()

    def run_cycle(self):
        """One cycle with its own tally; its outcomes are recorded whatever happens."""
        self.tally = CycleTally()
        try:
            return self.cycle()
        finally:
            for outcome, count in self.tally.requests.items():
                self.requests[outcome] = self.requests.get(outcome, 0) + count
            self.tally.settle(self.quarantine)

    def fetch_one(self, phase, item, fetch, own_item=True):
        """(OK, result), (FAILED, error) or (SKIPPED, None) for one upstream call, beating before it.

        `own_item` False: a failure no single item answers for (a batch)."""
        if self.quarantine.holds(item):
            return SKIPPED, None
        if own_item and self.ctx.hung_on(phase, item):
            self.quarantine.add(item, f"the previous process hung on it ({phase} {item})")
            return SKIPPED, None
        self.ctx.beat(phase, item)
        try:
            result = fetch()
        except ProviderError as e:
            log.warning("%s %s failed: %s", phase, item, e)
            self.tally.record(item, e, own=own_item)
            down = self.tally.provider_down()
            if down:
                raise ProviderDown(down) from None
            return FAILED, e
        self.tally.record(item, own=own_item)
        return OK, result

    def fetch_each(self, items, fetch, phase="fetch"):
        """`fetch(item)` for every item not in quarantine. Returns (results, errors, skipped) by item."""
        results, errors, skipped = {}, {}, []
        for item in items:
            outcome, value = self.fetch_one(phase, item, lambda: fetch(item))
            if outcome is OK:
                results[item] = value
            elif outcome is FAILED:
                errors[item] = str(value)
            else:
                skipped.append(item)
        return results, errors, skipped

    def check_provider(self):
        """Before storing: fail the cycle if, all told, its failures were the provider's, not the items'."""
        down = self.tally.provider_down(final=True)
        if down:
            raise ProviderDown(down)

    def store_snapshot(self, rows, keep=(), session=None):
        """Replace the dataset with `rows`, keeping the stored rows of the symbols in `keep`; with `session`
        (the date of the bars scanned), their new signals go into the signal history."""
        self.check_provider()
        self.ctx.beat("store", self.dataset)
        return self.store.replace_snapshot(self.dataset, rows, keep=keep, session=session)


def report(ctx, scan, quarantine, timetable=None):
    """Quarantined items, request counts, the schedule, and what a person must act on soon (the
    provider's warnings: a login about to expire), shown by the supervisor until a report without them."""
    # A provider pair (a fallback) counts each provider's own calls: Schwab's failure that Yahoo answered is both.
    counts = getattr(scan.provider, "request_counts", None)
    requests = counts() if counts else {scan.provider.name: dict(scan.requests)}
    ctx.report(quarantined=quarantine.listing(), provider_requests=requests,
               schedule=timetable.schedule.name if timetable else None, warnings=provider_warnings(scan.provider))


def provider_warnings(provider):
    """The provider's warnings; a bug in them is logged and costs only the warnings, never the loop."""
    try:
        return list(provider.warnings())
    except Exception:
        log.exception("the provider's warnings could not be read")
        return []


def schedule_of(ctx):
    """The worker's schedule: its `schedule` option, "auto" resolved by the provider and the kind."""
    provider = ctx.spec.sections.get("provider", {}).get("kind", "sim")
    return market_hours.resolve(ctx.options.get("schedule", market_hours.AUTO), provider,
                                kinds.MARKET_SCHEDULES.get(ctx.spec.kind, market_hours.REGULAR))


def run_once(ctx, scan, quarantine, timetable):
    """One pass of the loop: a cycle if the schedule says so (else an empty successful one), its
    report, and the idle wait until the next."""
    if timetable.due() is None:
        ctx.cycle(True, 0.0, {"off_schedule": 1})
        report(ctx, scan, quarantine, timetable)
        ctx.idle(timetable.rest(ctx.interval), phase="off-schedule")
        return
    started = time.monotonic()
    ok, counts, error = True, {}, None
    try:
        counts = scan.run_cycle()
    except (CycleFailed, StoreError, RowError, ProviderError) as e:
        ok, error = False, str(e)
        log.error("%s cycle failed: %s; the previous data stays served", scan.dataset, e)
    duration = time.monotonic() - started
    ctx.cycle(ok, duration, counts, error)
    record_cycle(scan.store, ctx.name, duration, ok)
    if ok:
        log.info("%s cycle: %s in %.2fs", scan.dataset, ", ".join(f"{k} {v}" for k, v in counts.items()), duration)
    report(ctx, scan, quarantine, timetable)
    ctx.idle(max(0.0, ctx.interval - duration))


def record_cycle(store, name, duration, ok):
    """The cycle into the cycle history (the page's charts); the store refusing costs only that row."""
    try:
        store.record_cycle(name, duration, ok)
    except StoreError as e:
        log.warning("the cycle could not be recorded in the cycle history: %s", e)


def run(ctx, scan_class):
    """The worker's main loop: never returns; every failure is reported, then retried next cycle."""
    provider_section = ctx.spec.sections.get("provider", {})
    provider = open_provider(provider_section, ctx.state_dir)
    store = StoreWriter(ctx.state_dir,
                        signal_retention_days=float(ctx.options.get("signal_retention_days", 30.0)))
    quarantine = Quarantine(
        os.path.join(ctx.state_dir, f"quarantine-{ctx.name}.json"),
        seconds=float(ctx.options.get("quarantine_seconds", 900.0)),
        after_failures=int(ctx.options.get("quarantine_after", 3)),
    )
    if ctx.handed_over:
        log.warning("the previous process was killed while on '%s'; it is quarantined (or, for a batch, split) "
                    "when this process meets it", ctx.handed_over.text())
    scan = scan_class(ctx, provider, store, quarantine)
    timetable = market_hours.Timetable(schedule_of(ctx), ctx.interval, market_hours.utc_now)
    log.info("%s works on schedule %s", ctx.name, timetable.schedule.name)
    report(ctx, scan, quarantine, timetable)  # before the first beat: the API knows the schedule from the start
    while True:
        run_once(ctx, scan, quarantine, timetable)
