"""One supervised child: what the supervisor knows about it, and its transitions.

`Worker._transition` is the only place that assigns `state`. The public
`on_*` methods are the events that move a worker; each names the transitions
it performs. Times are `time.monotonic()` values handed in by the caller, so a
fake clock can drive everything here.
"""
import collections
import os
import random
import signal

from supervisor.states import (
    FLAPPING_AFTER, PROCESS_STATES, RUNNING_STATES, WAITING_STATES, StopReason, WorkerState, backoff_delay,
    check_transition,
)

S = WorkerState
LOG_TAIL_LINES = 1000
CYCLE_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, float("inf"))


class CycleHistogram:
    """Cumulative histogram of cycle durations over the worker's whole life (all incarnations)."""

    def __init__(self):
        self.counts = [0] * len(CYCLE_BUCKETS)
        self.sum = 0.0

    def observe(self, seconds):
        self.sum += seconds
        for i, bound in enumerate(CYCLE_BUCKETS):
            if seconds <= bound:
                self.counts[i] += 1

    def as_dict(self):
        return {"buckets": [[("+Inf" if b == float("inf") else b), c] for b, c in zip(CYCLE_BUCKETS, self.counts)],
                "sum": round(self.sum, 6), "count": self.counts[-1]}


def signal_name(code):
    """The name of the signal that ended a process, from its exit code as
    os.waitstatus_to_exitcode gives it (negative for a signal); None if it exited."""
    if code is not None and code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return None


class Exit:
    """How one incarnation ended."""

    def __init__(self, status, reason, detail, at, doing=None):
        self.doing = doing  # the phase and item of its last beat
        self.code = os.waitstatus_to_exitcode(status) if status is not None else None
        self.reason = reason
        self.detail = detail
        self.at = at

    @property
    def signal_name(self):
        return signal_name(self.code)

    def describe(self):
        how = self.signal_name or f"exit {self.code}"
        return f"{how} ({self.reason.value}{': ' + self.detail if self.detail else ''})"

    def as_dict(self):
        return {"code": self.code, "signal": self.signal_name, "reason": self.reason.value, "detail": self.detail,
                "doing": self.doing}


class Worker:
    def __init__(self, spec, now, rng=random):
        self.spec = spec
        self.rng = rng
        self.state = S.STOPPED
        self.wanted = True  # should a process be running?
        self.removed = False  # dropped from the config on reload; forgotten once stopped
        self.pid = None
        self.started_at = None
        self.first_beat_at = None
        self.last_beat_at = None
        self.last_beat = None  # (phase, item) of the latest progress beat
        self.last_cycle_ok_at = None
        self.last_cycle = None  # the latest cycle report
        self.reported = {}  # the latest worker-reported status extras
        self.cycle_durations = CycleHistogram()
        self.cycles_ok = 0
        self.cycles_failed = 0
        # provider -> outcome -> count: earlier incarnations' totals, plus what the current one reports
        self.requests_before = collections.defaultdict(collections.Counter)
        self.max_beat_gap = 0.0  # the longest silence between two beats of one incarnation
        self.spawns = 0
        self.restarts_by_reason = collections.Counter()
        self.consecutive_failures = 0
        self.next_start_at = now
        self.backoff_s = 0.0
        self.stop_reason = None
        self.stop_detail = ""
        self.kill_at = None  # when SIGKILL is due for a STOPPING child
        self.killed = False
        self.last_exit = None
        self.handed_over = None  # the beat that a hung predecessor was stuck on
        self.log_tail = collections.deque(maxlen=LOG_TAIL_LINES)
        self.log_lines_dropped = 0
        self.next_rss_check = now
        self.rss_mb = None

    name = property(lambda self: self.spec.name)
    restarts = property(lambda self: max(0, self.spawns - 1))
    has_process = property(lambda self: self.state in PROCESS_STATES)

    def _transition(self, new, now):
        check_transition(self.state, new)
        self.state = new
        if new in WAITING_STATES:
            self.backoff_s = backoff_delay(
                self.consecutive_failures, self.spec.backoff_initial, self.spec.backoff_max, self.rng)
            self.next_start_at = now + self.backoff_s
        elif new is S.STOPPED:
            self.backoff_s = 0.0
            self.next_start_at = now

    # -- events ----------------------------------------------------------

    def on_spawned(self, pid, now):
        # STOPPED -> STARTING, BACKOFF -> STARTING, FLAPPING -> STARTING
        self._transition(S.STARTING, now)
        self.pid = pid
        self.spawns += 1
        self.started_at = now
        self.first_beat_at = self.last_beat_at = None
        self.last_beat = None
        self.last_cycle_ok_at = None
        self.stop_reason, self.stop_detail = None, ""
        self.kill_at, self.killed = None, False
        self.max_beat_gap = 0.0
        self.next_rss_check = now

    def on_message(self, message, now):
        kind = message["t"]
        if kind == "beat":
            self._beat(message, now)
        elif kind == "cycle":
            self.last_cycle = message
            self.cycle_durations.observe(max(0.0, float(message["duration"])))
            if message["ok"]:
                self.last_cycle_ok_at = now
                self.cycles_ok += 1
            else:
                self.cycles_failed += 1
            self._beat(None, now)
        else:
            self.reported = {k: v for k, v in message.items() if k != "t"}

    def provider_requests(self):
        """provider -> outcome -> requests over every incarnation (a counter that never goes down)."""
        totals = collections.defaultdict(collections.Counter)
        for source in (self.requests_before, self.reported.get("provider_requests") or {}):
            for provider, outcomes in source.items():
                if isinstance(outcomes, dict):
                    for outcome, count in outcomes.items():
                        if isinstance(count, int):
                            totals[provider][outcome] += count
        return {p: dict(o) for p, o in totals.items()}

    def _beat(self, message, now):
        if self.last_beat_at is not None:
            self.max_beat_gap = max(self.max_beat_gap, now - self.last_beat_at)
        self.last_beat_at = now
        if message is not None:
            self.last_beat = (message["phase"], message.get("item"))
        if self.state is S.STARTING:
            # STARTING -> RUNNING
            self.first_beat_at = now
            self._transition(S.RUNNING, now)

    def on_stop_requested(self, reason, detail, now):
        # STARTING -> STOPPING, RUNNING -> STOPPING
        self._transition(S.STOPPING, now)
        self.stop_reason, self.stop_detail = reason, detail
        self.kill_at = now + self.spec.stop_timeout
        if reason in (StopReason.HANG, StopReason.STALLED) and self.last_beat:
            self.handed_over = self.last_beat

    def on_killed(self):
        self.killed = True

    def on_exited(self, status, now):
        """The process was reaped; returns its Exit."""
        reason = self.stop_reason or StopReason.CRASH
        exit_ = Exit(status, reason, self.stop_detail, now, self.last_beat_text())
        self.last_exit = exit_
        self.requests_before = collections.defaultdict(collections.Counter, {
            p: collections.Counter(o) for p, o in self.provider_requests().items()})
        self.reported = {}
        self.pid = None
        self.restarts_by_reason[reason.value] += 1
        if not reason.is_failure:
            # STOPPING -> STOPPED
            self.consecutive_failures = 0
            self._transition(S.STOPPED, now)
            return exit_
        if self.first_beat_at is not None and now - self.first_beat_at >= self.spec.stable_after:
            self.consecutive_failures = 0  # it had been healthy long enough: start backoff over
        self.consecutive_failures += 1
        # STARTING/RUNNING/STOPPING -> BACKOFF, or -> FLAPPING when it keeps failing
        self._transition(S.FLAPPING if self.consecutive_failures >= FLAPPING_AFTER else S.BACKOFF, now)
        return exit_

    def on_stop_while_waiting(self, now):
        # BACKOFF -> STOPPED, FLAPPING -> STOPPED
        self._transition(S.STOPPED, now)

    # -- questions -------------------------------------------------------

    def staleness(self, now):
        """(reason, detail) if this running child must be stopped, else None."""
        if self.state not in RUNNING_STATES:
            return None
        spec = self.spec
        if self.state is S.STARTING:
            if now - self.started_at >= spec.startup_timeout:
                return StopReason.HANG, f"no first heartbeat within startup_timeout {spec.startup_timeout:g}s"
            return None
        silent = now - self.last_beat_at
        if silent >= spec.heartbeat_timeout:
            return StopReason.HANG, f"no heartbeat for {silent:.1f}s{self._doing()}"
        if spec.stale_cycles > 0:
            since = self.last_cycle_ok_at or self.first_beat_at
            limit = spec.stale_cycles * spec.interval
            if now - since >= limit:
                return StopReason.STALLED, f"no successful cycle for {now - since:.1f}s ({spec.stale_cycles:g} intervals)"
        return None

    def _doing(self):
        if not self.last_beat:
            return ""
        phase, item = self.last_beat
        return f"; last beat '{phase}{' ' + item if item else ''}'"

    def next_deadline(self):
        """The earliest monotonic time at which this worker needs attention, or None."""
        spec = self.spec
        if self.state is S.STARTING:
            return self.started_at + spec.startup_timeout
        if self.state is S.RUNNING:
            deadlines = [self.last_beat_at + spec.heartbeat_timeout]
            if spec.stale_cycles > 0:
                deadlines.append((self.last_cycle_ok_at or self.first_beat_at) + spec.stale_cycles * spec.interval)
            if spec.max_rss_mb > 0:
                deadlines.append(self.next_rss_check)
            return min(deadlines)
        if self.state is S.STOPPING:
            return None if self.killed else self.kill_at
        if self.state in WAITING_STATES and self.wanted:
            return self.next_start_at
        if self.state is S.STOPPED and self.wanted:
            return self.next_start_at
        return None

    def is_healthy(self, now):
        return self.state is S.RUNNING and self.staleness(now) is None

    def last_beat_text(self):
        if not self.last_beat:
            return None
        phase, item = self.last_beat
        return f"{phase} {item}" if item else phase
