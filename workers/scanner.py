"""The loop every scanner worker shares: fetch per item (beating), scan, store, report.

A scan type supplies `cycle(self) -> counts`, built from `fetch_each` (which
beats before every upstream call, skips quarantined items and records
failures) and `store` (one transaction). This module owns the rest: the
provider and store, the quarantine of what hung a predecessor, the cycle
reports to the supervisor, and the idle wait between cycles.

A failed cycle (nothing fetched, the store locked or full) is reported as
failed and leaves the previous data served; the next cycle retries. A symbol
that fails in an otherwise good cycle keeps its previous row (carried over
from this process's last good result) rather than vanishing from the dataset.
"""
import collections
import logging
import os
import time

from workers.providers.base import ProviderError
from workers.quarantine import Quarantine
from workers.store import RowError, StoreError, StoreWriter

log = logging.getLogger("scanner")

OUTCOMES = {
    "DeadlineExceeded": "timeout", "HttpStatusError": "http_error", "BadPayload": "bad_payload",
    "AuthError": "auth_error", "CircuitOpen": "circuit_open", "BudgetExhausted": "budget_exhausted",
}


class CycleFailed(Exception):
    """This cycle produced nothing worth storing."""


def open_provider(section, state_dir):
    """The provider named by the [provider] config table."""
    kind = section.get("kind", "sim")
    if kind == "sim":
        from workers.providers.sim import SimProvider

        provider = SimProvider(seed=int(section.get("sim_seed", 0)))
    elif kind == "schwab":
        from workers.providers.schwab import open_from_config

        provider = open_from_config(section, state_dir)
    else:
        raise ValueError(f"provider.kind = {kind!r}: allowed is sim or schwab")
    if section.get("sim_hang_symbols") or section.get("sim_fail_symbols"):
        from workers.providers.faults import FaultyProvider

        provider = FaultyProvider(provider, section.get("sim_hang_symbols", ()), section.get("sim_fail_symbols", ()))
    return provider


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
        self.requests = collections.Counter()  # outcome -> provider calls, this incarnation
        self.last_rows = {}  # symbol -> the row stored for it by the last good cycle

    def fetch_each(self, items, fetch, phase="fetch"):
        """Call `fetch(item)` for every item not in quarantine, beating before each.

        Returns (results by item, errors by item, items skipped)."""
        results, errors, skipped = {}, {}, []
        for item in items:
            if self.quarantine.holds(item):
                skipped.append(item)
                continue
            self.ctx.beat(phase, item)
            try:
                results[item] = fetch(item)
            except ProviderError as e:
                errors[item] = str(e)
                self.requests[OUTCOMES.get(type(e).__name__, "error")] += 1
                if type(e).__name__ != "CircuitOpen":
                    self.quarantine.failed(item, str(e))
                log.warning("%s %s failed: %s", phase, item, e)
            else:
                self.requests["ok"] += 1
                self.quarantine.succeeded(item)
        return results, errors, skipped

    def carry_over(self, rows, failed):
        """`rows` (by symbol) plus the last stored row of each symbol that failed this cycle."""
        merged = dict(rows)
        for symbol in failed:
            if symbol not in merged and symbol in self.last_rows:
                merged[symbol] = self.last_rows[symbol]
        self.last_rows = merged
        return list(merged.values())

    def store_snapshot(self, rows):
        self.ctx.beat("store", self.dataset)
        return self.store.replace_snapshot(self.dataset, rows)


def report(ctx, scan, quarantine):
    ctx.report(quarantined=quarantine.listing(), provider_requests={scan.provider.name: dict(scan.requests)})


def run(ctx, scan_class):
    """The worker's main loop: never returns; every failure is reported, then retried next cycle."""
    provider_section = ctx.spec.sections.get("provider", {})
    provider = open_provider(provider_section, ctx.state_dir)
    store = StoreWriter(ctx.state_dir)
    quarantine = Quarantine(
        os.path.join(ctx.state_dir, f"quarantine-{ctx.name}.json"),
        seconds=float(ctx.options.get("quarantine_seconds", 900.0)),
        after_failures=int(ctx.options.get("quarantine_after", 3)),
    )
    if ctx.handed_over:
        phase, item = ctx.handed_over
        if item and phase not in ("idle", "store", "scan"):
            quarantine.add(item, f"the previous process hung on it ({phase} {item})")
    scan = scan_class(ctx, provider, store, quarantine)
    while True:
        started = time.monotonic()
        ok, counts, error = True, {}, None
        try:
            counts = scan.cycle()
        except (CycleFailed, StoreError, RowError, ProviderError) as e:
            ok, error = False, str(e)
            log.error("%s cycle failed: %s; the previous data stays served", scan.dataset, e)
        duration = time.monotonic() - started
        ctx.cycle(ok, duration, counts, error)
        if ok:
            log.info("%s cycle: %s in %.2fs", scan.dataset, ", ".join(f"{k} {v}" for k, v in counts.items()), duration)
        report(ctx, scan, quarantine)
        ctx.idle(max(0.0, ctx.interval - duration))
