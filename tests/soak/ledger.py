"""Which faults hit which worker when, and the dataset gaps they do not excuse.

The accounting
--------------
Every fault the soak applies is recorded as a span [start, end] against the
workers it hits (times are the soak's time.monotonic()):

- an instant fault has start == end, at the moment it was sent: SIGKILL,
  SIGSEGV or SIGTERM of a worker; `mdwctl restart W`; an accepted
  `POST /api/workers/W/restart`; a good reload, against the one worker whose
  settings it changed (only that one is restarted);
- a lasting fault ends when the soak undoes it: SIGSTOP until its SIGCONT
  (if the supervisor kills the stopped worker first, the span still runs to
  the SIGCONT: a slight over-excuse, never a false alarm); `mdwctl stop W`
  until `mdwctl start W`; the database lock (BEGIN EXCLUSIVE from the soak)
  from the moment it was asked for until its ROLLBACK, against every scanner
  (each one writes);
- a hung symbol (a reload setting `[provider] sim_hang_symbols`) hits every
  scanner: the reload restarts all of them ([provider] is read by all), so it
  is an instant fault for each, followed by a span of `hang_allowance` =
  HANG_ROUNDS x (heartbeat_timeout + stop_timeout + backoff_max): the time the
  README's quarantine needs to isolate the symbol (the watchlist first hangs on
  a 50-symbol batch, which its successor splits, then on the symbol itself,
  which the next one skips; the other scanners need one round). The reload
  that clears the hang is another instant fault against every scanner. The
  span deliberately does NOT last until the hang is cleared: after the
  allowance the scanners owe their datasets again, hung symbol or not;
- faults against the API's serving processes and the api worker are recorded
  against "api", which writes no dataset; a rejected (broken) reload hits no
  one, since the running tree must be kept unchanged; one that mdwd wrongly
  accepts (a violation of its own) is a span against the workers it
  restarted, until the soak's reload of the good config.

A worker owes a write of its dataset `limit` seconds (settings.Timings.limit:
its longest interval + heartbeat_timeout + backoff_max + stop_timeout, plus
POLL_SLACK) after the later of its last observed write and the end of the
last fault span that touched it; while a span is open it owes nothing. The
writes are the changes of its row in the `last_update` table, seen by
polling. `stretches()` walks the writes and spans in time order and yields
every stretch in which the worker owed a write, ending at the next write, at
the start of the next fault that hit it (the worker was already overdue when
it came: still a gap), or at the end of the observation. A stretch longer than
`limit` is a dataset-gap violation.
"""
import collections
import dataclasses
import math
import threading

OPEN = math.inf


@dataclasses.dataclass
class Span:
    start: float
    end: float
    kind: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Stretch:
    start: float  # the later of the last write and the end of the last fault span
    end: float
    ended_by: str  # "write", "fault: <kind> <detail>", or "end of the soak"
    anchor: str  # what `start` is: "write" or "fault: <kind> <detail>"

    @property
    def length(self):
        return self.end - self.start


class Ledger:
    """Fault spans per worker; written by the fault driver, read by the analysis (thread-safe)."""

    def __init__(self):
        self._spans = collections.defaultdict(list)
        self._lock = threading.Lock()

    def instant(self, workers, kind, detail, at):
        self.begin(workers, kind, detail, at, end=at)

    def begin(self, workers, kind, detail, at, end=OPEN):
        """Record a fault against `workers`; returns the spans, to pass to `end()` when it is undone."""
        spans = [Span(at, end, kind, detail) for _ in workers]
        with self._lock:
            for worker, span in zip(workers, spans):
                self._spans[worker].append(span)
        return spans

    def end(self, spans, at):
        with self._lock:
            for span in spans:
                span.end = max(span.start, at)

    def spans(self, worker):
        with self._lock:
            return sorted((dataclasses.replace(s) for s in self._spans[worker]), key=lambda s: s.start)

    def last_hit(self, worker, before):
        """The latest span of `worker` that started before `before`, or None (for a violation's context)."""
        earlier = [s for s in self.spans(worker) if s.start <= before]
        return max(earlier, key=lambda s: min(s.end, before), default=None)


def stretches(writes, spans, start, end):
    """Every stretch in which the worker owed a write (see the module docstring).

    `writes`: sorted times at which a new write was seen; `start`: when
    observation began (the tree was up, each dataset written once: the first
    stretch runs from the last write before it); `end`: when it stopped.
    Spans are sorted by start.
    """
    first = max((w for w in writes if w <= start), default=None)
    bounds = [start if first is None else first] + [w for w in writes if start < w <= end] + [end]
    for a, b in zip(bounds, bounds[1:]):
        yield from _segment(a, b, spans, last=b == end and b not in writes,
                            why="start of observation" if first is None and a == start else "write")


def _segment(a, b, spans, last, why):
    anchor = a
    for span in spans:
        if span.end < a or span.start > b:
            continue
        if span.start > anchor:
            yield Stretch(anchor, span.start, f"fault: {span.kind} {span.detail}", why)
        if span.end > anchor:
            anchor, why = span.end, f"fault: {span.kind} {span.detail}"
    if b > anchor:
        yield Stretch(anchor, b, "end of the soak" if last else "write", why)


def raw_gaps(writes, start, end):
    """The plain time between consecutive writes (and from the last one to `end`)."""
    first = max((w for w in writes if w <= start), default=start)
    bounds = [first] + [w for w in writes if start < w <= end]
    return [b - a for a, b in zip(bounds, bounds[1:] + [end])]
