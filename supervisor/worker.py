"""One supervised child: what the supervisor knows about it, and its transitions.

`Worker._transition` is the only place that assigns `state`. The public
`on_*` and request methods are the events that move a worker; a comment
above each names the transitions it performs. Times are `time.monotonic()`
values handed in by the caller, so a fake clock can drive everything here.

Health is more than the state: a RUNNING worker whose last cycle failed, or
that has not had a successful cycle within `startup_timeout + interval` of
its start, or whose predecessor was killed for a failure and has not had a
successful cycle since, is failing (`failing_reason`); so is one whose beat is
late, silent for over half its `heartbeat_timeout` (LATE_BEAT_FRACTION): it
beats at least every third of it while idle and before every upstream call,
whose deadline is shorter, so a late beat is a hang the kill has not reached
yet, and /health, mdwctl and the page say so from then on, not only after the
kill. A restart does not make a worker healthy; a successful cycle does.
"""
import collections
import os
import random

from supervisor.shared.exits import signal_name
from supervisor.shared.protocol import Beat
from supervisor.states import (
    BACKOFF_STATES, FLAPPING_AFTER, PROCESS_STATES, RUNNING_STATES, STOPPING_STATES, WANTED_STATES, WAITING_STATES,
    StopReason, WorkerState, backoff_delay, check_transition,
)

S = WorkerState
LOG_TAIL_LINES = 1000
LATE_BEAT_FRACTION = 0.5
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

    def why(self):
        """'hang: fetch TSLA', 'crash', 'memory': the reason, with what it was doing when that matters."""
        doing = self.doing if self.doing and self.reason in (StopReason.HANG, StopReason.STALLED) else None
        return f"{self.reason.value}: {doing}" if doing else self.reason.value

    def as_dict(self):
        return {"code": self.code, "signal": self.signal_name, "reason": self.reason.value, "detail": self.detail,
                "doing": self.doing}


class Worker:
    def __init__(self, spec, now, rng=random):
        self.spec = spec
        self.rng = rng
        self.state = S.PENDING
        self.created_at = now  # when the supervisor took it on (its dataset is due within a cycle of that)
        self.pid = None
        self.started_at = None
        self.first_beat_at = None
        self.last_beat_at = None
        self.last_beat = None  # Beat: the latest progress beat of this incarnation
        self.last_cycle_ok_at = None
        self.last_cycle = None  # the latest cycle report, of any incarnation
        self.failing = None  # why it is failing, until a successful cycle (survives restarts)
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
        self.kill_at = None  # when SIGKILL is due for a child being stopped
        self.killed = False
        self.last_exit = None
        self.handed_over = None  # Beat: what a predecessor killed for a failure was doing
        self.log_tail = collections.deque(maxlen=LOG_TAIL_LINES)
        self.log_lines_dropped = 0
        self.next_rss_check = now
        self.rss_mb = None

    name = property(lambda self: self.spec.name)
    restarts = property(lambda self: max(0, self.spawns - 1))
    has_process = property(lambda self: self.state in PROCESS_STATES)
    wanted = property(lambda self: self.state in WANTED_STATES)

    def _transition(self, new, now):
        check_transition(self.state, new)
        self.state = new
        if new in BACKOFF_STATES:
            self.backoff_s = backoff_delay(
                self.consecutive_failures, self.spec.backoff_initial, self.spec.backoff_max, self.rng)
            self.next_start_at = now + self.backoff_s
        elif new in (S.PENDING, S.STOPPED):
            self.backoff_s = 0.0
            self.next_start_at = now

    def _after_failure(self, now):
        # -> BACKOFF, or -> FLAPPING when it keeps failing
        self.consecutive_failures += 1
        self._transition(S.FLAPPING if self.consecutive_failures >= FLAPPING_AFTER else S.BACKOFF, now)

    # -- events of the process -------------------------------------------

    def on_spawned(self, pid, now):
        # PENDING -> STARTING, BACKOFF -> STARTING, FLAPPING -> STARTING
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
        self.handed_over = None

    def on_spawn_failed(self, error, now):
        # PENDING/BACKOFF/FLAPPING -> BACKOFF or FLAPPING: a failed fork is retried with backoff
        self.failing = f"cannot start a process: {error}"
        self._after_failure(now)

    def on_message(self, message, now):
        kind = message["t"]
        if kind == "beat":
            self._beat(Beat(message["phase"], message["item"], message["key"]), now)
        elif kind == "cycle":
            self.last_cycle = message
            self.cycle_durations.observe(message["duration"])
            if message["ok"]:
                self.last_cycle_ok_at = now
                self.cycles_ok += 1
                self.failing = None
            else:
                self.cycles_failed += 1
                self.failing = f"last cycle failed: {message['error'] or 'no reason given'}"
            self._beat(None, now)
        else:
            self.reported = {k: v for k, v in message.items() if k != "t"}

    def _beat(self, beat, now):
        if self.last_beat_at is not None:
            self.max_beat_gap = max(self.max_beat_gap, now - self.last_beat_at)
        self.last_beat_at = now
        if beat is not None:
            self.last_beat = beat
        if self.state is S.STARTING:
            # STARTING -> RUNNING
            self.first_beat_at = now
            self._transition(S.RUNNING, now)

    def on_killed(self):
        self.killed = True

    def on_exited(self, status, now):
        """The process was reaped; returns its Exit."""
        reason = self.stop_reason or StopReason.CRASH
        exit_ = Exit(status, reason, self.stop_detail, now, self.last_beat.text() if self.last_beat else None)
        self.last_exit = exit_
        self.requests_before = collections.defaultdict(collections.Counter, {
            p: collections.Counter(o) for p, o in self.provider_requests().items()})
        self.reported = {}
        self.pid = None
        self.restarts_by_reason[reason.value] += 1
        if reason.is_failure:
            self.failing = f"{exit_.why()}; no successful cycle since"
            if reason is not StopReason.CRASH and self.last_beat and self.last_beat.item:
                self.handed_over = self.last_beat
            if self.first_beat_at is not None and now - self.first_beat_at >= self.spec.stable_after:
                self.consecutive_failures = 0  # it had been healthy long enough: start backoff over
        if self.state is S.STOPPING:
            # STOPPING -> STOPPED
            self._transition(S.STOPPED, now)
        elif self.state is S.RETIRING:
            # RETIRING -> REMOVED
            self._transition(S.REMOVED, now)
        elif self.state is S.RESTARTING and not reason.is_failure:
            # RESTARTING -> PENDING (an intentional restart starts again at once)
            self._transition(S.PENDING, now)
        else:
            # STARTING/RUNNING/RESTARTING -> BACKOFF or FLAPPING
            self._after_failure(now)
        if not reason.is_failure:
            self.consecutive_failures = 0
        return exit_

    # -- requests (operator, reload, the supervisor's checks) -----------

    def stop(self, reason, detail, now, goal):
        """Stop the process and then go to `goal` (STOPPING, RESTARTING or RETIRING).

        Returns True when the caller must signal the process now (it was
        running); False when it was already being stopped (now redirected) or
        had no process (now STOPPED, PENDING or REMOVED)."""
        assert goal in STOPPING_STATES, goal
        if self.state in RUNNING_STATES:
            # STARTING/RUNNING -> STOPPING, RESTARTING or RETIRING
            self._transition(goal, now)
            self.stop_reason, self.stop_detail = reason, detail
            self.kill_at = now + self.spec.stop_timeout
            return True
        if self.state in STOPPING_STATES:
            # STOPPING <-> RESTARTING -> RETIRING: the stop under way now ends somewhere else
            if self.state is not goal and not (self.state is S.RETIRING and goal is S.STOPPING):
                self._transition(goal, now)
            return False
        # STOPPED/PENDING/BACKOFF/FLAPPING -> STOPPED, PENDING or REMOVED
        target = {S.STOPPING: S.STOPPED, S.RESTARTING: S.PENDING, S.RETIRING: S.REMOVED}[goal]
        if self.state is not target:
            self._transition(target, now)
        return False

    def start(self, now):
        """Make sure a process runs (soon): a start request, or a worker added back on reload."""
        if self.state in (S.STOPPED, S.BACKOFF, S.FLAPPING):
            # STOPPED/BACKOFF/FLAPPING -> PENDING
            self._transition(S.PENDING, now)
        elif self.state in (S.STOPPING, S.RETIRING):
            # STOPPING/RETIRING -> RESTARTING: start again once it has exited
            self._transition(S.RESTARTING, now)

    def change_spec(self, spec, now):
        """New settings from a reload. True if the running process must be restarted for them."""
        self.spec = spec
        if self.state in BACKOFF_STATES:
            # BACKOFF/FLAPPING -> PENDING: the new settings may be what it needed
            self._transition(S.PENDING, now)
        return self.state in RUNNING_STATES

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
            doing = f"; last beat '{self.last_beat.text()}'" if self.last_beat else ""
            return StopReason.HANG, f"no heartbeat for {silent:.1f}s{doing}"
        if spec.stale_cycles > 0:
            since = self.last_cycle_ok_at or self.first_beat_at
            limit = spec.stale_cycles * spec.interval
            if now - since >= limit:
                return StopReason.STALLED, f"no successful cycle for {now - since:.1f}s ({spec.stale_cycles:g} intervals)"
        return None

    def failing_reason(self, now):
        """Why a running worker is not doing its job, or None: a late beat, then its cycles."""
        timeout = self.spec.heartbeat_timeout
        if self.state is S.RUNNING and self.last_beat_at is not None and now - self.last_beat_at > timeout * LATE_BEAT_FRACTION:
            doing = f"; last beat '{self.last_beat.text()}'" if self.last_beat else ""
            return f"no heartbeat for {now - self.last_beat_at:.0f}s (killed at {timeout:g}s){doing}"
        if self.failing:
            return self.failing
        if self.last_cycle_ok_at is None and self.started_at is not None:
            grace = self.spec.startup_timeout + self.spec.interval
            if now - self.started_at >= grace:
                return f"no successful cycle in {now - self.started_at:.0f}s since it started"
        return None

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
        if self.state in STOPPING_STATES:
            return None if self.killed else self.kill_at
        if self.state in WAITING_STATES:
            return self.next_start_at
        return None

    def is_healthy(self, now):
        return self.state is S.RUNNING and self.staleness(now) is None and self.failing_reason(now) is None

    def last_beat_text(self):
        return self.last_beat.text() if self.last_beat else None

    def provider_requests(self):
        """provider -> outcome -> requests over every incarnation (a counter that never goes down)."""
        totals = collections.defaultdict(collections.Counter)
        for source in (self.requests_before, self.reported.get("provider_requests") or {}):
            for provider, outcomes in source.items():
                for outcome, count in outcomes.items():
                    totals[provider][outcome] += count
        return {p: dict(o) for p, o in totals.items()}
