"""What the soak prints: a line per fault as it happens, violations, and the closing figures.

Times are seconds since the soak started its tree (`+12.3s`), so a line can
be matched with mdwd's own log in the soak's directory (kept with --keep).
"""
import collections
import sys
import threading

from tests.soak.ledger import raw_gaps, stretches
from tests.soak.settings import WRITER


class Report:
    def __init__(self, clock, origin, quiet=False, out=sys.stdout):
        self.clock, self.origin, self.quiet, self.out = clock, origin, quiet, out
        self.violations = []  # (time, check, message)
        self.notes = []
        self._lock = threading.Lock()

    def rel(self, t):
        return f"+{t - self.origin:6.1f}s"

    def say(self, text):
        with self._lock:
            print(text, file=self.out, flush=True)

    def fault(self, t, text):
        if not self.quiet:
            self.say(f"{self.rel(t)} {text}")

    def note(self, text):
        self.notes.append(text)
        self.say(f"note: {text}")

    def violation(self, t, check, message):
        with self._lock:
            self.violations.append((t, check, message))
        self.say(f"{self.rel(t)} VIOLATION {check}: {message}")


def gap_findings(soak, observed_from, observed_to):
    """Per dataset: (worst raw gap, worst unexcused stretch, limit); and a violation per stretch over its limit."""
    rows, found = {}, []
    for dataset, worker in WRITER.items():
        writes = soak.monitor.writes_of(dataset)
        limit = soak.timings.limit(worker)
        spans = soak.ledger.spans(worker)
        owed = list(stretches(writes, spans, observed_from, observed_to))
        worst = max(owed, key=lambda s: s.length, default=None)
        rows[dataset] = (max(raw_gaps(writes, observed_from, observed_to), default=0.0),
                         worst.length if worst else 0.0, limit, len(writes))
        for stretch in owed:
            if stretch.length > limit:
                found.append((stretch.start + limit, dataset, worker, stretch))
    return rows, found


def describe_gap(soak, dataset, worker, stretch, limit):
    context = soak.status.near(stretch.start + limit).get(worker, "no status")
    writes = soak.monitor.writes_of(dataset)
    before = max((w for w in writes if w <= stretch.start), default=None)
    after = min((w for w in writes if w > stretch.start), default=None)
    rel = soak.report.rel
    return (f"{dataset} (written by {worker}) owed a write for {stretch.length:.1f}s, limit {limit:.1f}s: from "
            f"{rel(stretch.start)} (after the last {stretch.anchor}) to {rel(stretch.end)} ({stretch.ended_by}), "
            f"with no fault applied to {worker} in between; written last at "
            f"{rel(before) if before else 'never'}, next at {rel(after) if after else 'never (within the soak)'}; "
            f"{worker} was: {context[:400]}")


def restarts_by_reason(status):
    total, per_worker = collections.Counter(), {}
    for row in (status or {}).get("workers", []):
        reasons = {k: v for k, v in (row.get("restarts_by_reason") or {}).items() if v}
        per_worker[row["name"]] = reasons
        total.update(reasons)
    return total, per_worker


def _counter(counter):
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0])))) or "none"


def print_summary(soak, gaps, figures):
    say = soak.report.say
    verdict = "FAIL" if soak.report.violations else "PASS"
    say("")
    say(f"===== mdw soak: {verdict} =====")
    say(f"seed {soak.seed}; replay: {soak.replay_command()}")
    say(f"duration: {figures['drive']:.1f}s of faults; tree up {figures['tree_up']:.1f}s; {soak.timings.describe()}")
    faults = soak.chaos.counts if soak.chaos else {}
    say(f"faults applied ({sum(faults.values())}): {_counter(faults)}")
    total, per_worker = restarts_by_reason(figures.get("status"))
    say(f"restarts by reason (mdwctl status --json, before shutdown): {_counter(total)}")
    for name, reasons in per_worker.items():
        say(f"  {name:<12} {_counter(reasons)}")
    say("datasets: writes seen, worst gap between writes, worst stretch owed (after the last write or fault), limit")
    for dataset, (raw, owed, limit, count) in gaps.items():
        flag = "OVER" if owed > limit else "ok"
        say(f"  {dataset:<20} {count:4d} writes  worst gap {raw:6.1f}s  worst owed {owed:6.1f}s  "
            f"limit {limit:5.1f}s  {flag}")
    traffic = soak.traffic
    if traffic is not None:
        say(f"HTTP requests ({sum(traffic.by_status.values())}) by status: {_counter(traffic.by_status)}")
        if traffic.good_4xx:
            say(f"  good requests answered 4xx (not a failure; worth a look): {_counter(traffic.good_4xx)}")
    resources = figures.get("resources")
    if not resources:
        say("mdwd fds and RSS: not compared (mdwd did not run from the first minute to the last)")
    else:
        (fds0, rss0), (fds1, rss1), (fd_tol, rss_tol) = resources
        say(f"mdwd own fds (beyond 2 pipes per live child): start {fds0}, end {fds1} (tolerance +{fd_tol}); "
            f"RSS: start {rss0:.1f} MiB, end {rss1:.1f} MiB (tolerance +{rss_tol:g} MiB); medians of the first "
            f"and the last minute")
    say(f"max zombie age: {soak.monitor.max_zombie_age():.1f}s (limit 5s; seen every 0.5s) among mdwd's descendants")
    for line in figures.get("shutdown", []):
        say(line)
    say(f"integrity_check: {figures.get('integrity', 'not run')}")
    for note in soak.report.notes:
        say(f"note: {note}")
    say(f"violations ({len(soak.report.violations)}):")
    for t, check, message in sorted(soak.report.violations, key=lambda v: v[0]):
        say(f"  {soak.report.rel(t)} {check}: {message}")
    say(f"===== {verdict} =====")
    return verdict == "PASS"
