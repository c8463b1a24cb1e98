"""The fault catalog, and the driver that applies faults at random (seeded).

Every fault has a name and a class; `--skip` takes either. The driver draws
one fault every 1-4 s by weight (`WEIGHTS`), picks its target at random, and
schedules its undo (SIGCONT, `mdwctl start`, ROLLBACK, clearing the hang) on
a clock of its own. Each applied fault is recorded in the ledger against the
workers it hits (see ledger.py for the accounting).

Two rules keep the gap check meaningful among so many faults:
- resting: the scanners take turns (a seeded order) at not being targeted,
  each for its dataset limit + 5 s, so every scanner has stretches in which
  its limit is actually enforced. Global faults (the database lock) still hit
  the resting one.
- while a symbol hangs, nothing else touches the scanners (only the API, and
  reloads that are rejected or change the api worker), so the hang alone
  decides whether the datasets keep coming.
"""
import heapq
import itertools
import random
import signal

from tests.soak import actions
from tests.soak.settings import BROKEN, HANG_LENGTH, SCANNERS, WORKERS

CLASSES = {
    "worker-signal": ("kill", "stop", "segv", "term"),
    "api-signal": ("api-kill", "api-stop", "api-segv", "api-term"),
    "ctl": ("ctl-restart", "ctl-stop", "ctl-start", "api-restart"),
    "reload": ("reload",),
    "broken-reload": BROKEN,
    "db-lock": ("db-lock",),
    "hang": ("hang",),
    "junk": ("junk",),  # the junk half of the API traffic
    "term-twice": ("term-twice",),  # the final shutdown's second SIGTERM (and the probe that needs it)
}
FAULT_CLASS = {name: cls for cls, names in CLASSES.items() for name in names}
WEIGHTS = {
    "kill": 1.0, "stop": 1.0, "segv": 1.0, "term": 1.0,
    "api-kill": 0.4, "api-stop": 0.3, "api-segv": 0.3, "api-term": 0.3,
    "ctl-restart": 0.6, "ctl-stop": 0.5, "ctl-start": 0.3, "api-restart": 0.4,
    "reload": 1.0, "db-lock": 0.5,
    **{variant: 0.3 for variant in BROKEN},
}
SCANNER_SAFE = {"api-kill", "api-stop", "api-segv", "api-term", "reload", "ctl-start", *BROKEN}  # allowed while hung


def parse_skip(text):
    """The set of fault names that `--skip a,b` turns off; ValueError naming an unknown one."""
    skipped = set()
    for word in filter(None, (w.strip() for w in (text or "").split(","))):
        if word in CLASSES:
            skipped.update(CLASSES[word])
        elif word in FAULT_CLASS:
            skipped.add(word)
        else:
            known = ", ".join(f"{cls} ({', '.join(names)})" for cls, names in CLASSES.items())
            raise ValueError(f"--skip {word!r}: not a fault class or name; known: {known}")
    return skipped


def catalog():
    return "\n".join(f"  {cls:<14} {', '.join(names)}" for cls, names in CLASSES.items())


class Chaos:
    def __init__(self, soak, skip, duration):
        self.soak = soak  # tree, ledger, state, timings, seed, clock, report
        # Separate streams, so that what one draws at run time (a target among the live workers) does not
        # shift the others: the same seed gives the same faults at the same times and the same hung symbol.
        self.rng = random.Random(f"{soak.seed}:faults")  # which fault, when
        self.pick = random.Random(f"{soak.seed}:targets")  # its target and parameters
        self.hang_rng = random.Random(f"{soak.seed}:hang")
        self.clock = soak.clock
        self.skip = skip
        self.enabled = [name for name in WEIGHTS if name not in skip]
        self.pending = []  # heap of (due, seq, label, undo)
        self.seq = itertools.count()
        self.counts = {}
        self.stopped = {}  # worker -> its pending `mdwctl start` (ctl-stop)
        self.db_lock = None
        self.hang_symbol = None
        self.dead = False  # mdwd died: stop driving
        self.started = self.clock()
        order = list(SCANNERS)
        self.rng.shuffle(order)
        self.rest_order = [(w, soak.timings.limit(w) + 5.0) for w in order]
        self.hang_at = self.plan_hang(duration)

    # -- the loop ---------------------------------------------------------

    def run(self, until, pause):
        """Apply faults until `until` (a clock time) or until mdwd dies; then undo what is pending."""
        next_fault = self.clock() + 2.0
        while not self.dead and self.clock() < until:
            self.run_due()
            now = self.clock()
            if self.hang_at is not None and now >= self.hang_at:
                self.hang_at = None
                self.apply("hang", actions.start_hang)
            elif now >= next_fault:
                self.apply_random()
                next_fault = self.clock() + self.rng.uniform(1.0, 4.0)
            if not self.soak.tree.alive():
                self.soak.mdwd_died("while the soak was driving faults")
                self.dead = True
            pause(min(0.2, max(0.0, min([next_fault] + [p[0] for p in self.pending[:1]]) - self.clock())))
        self.undo_all()

    def apply_random(self):
        choices = [n for n in self.enabled if self.hang_symbol is None or n in SCANNER_SAFE]
        if self.db_lock is not None:
            choices = [n for n in choices if n != "db-lock"]
        if not choices:
            return
        name = self.rng.choices(choices, weights=[WEIGHTS[n] for n in choices])[0]
        self.apply(name, getattr(actions, ACTIONS[name][0]), *ACTIONS[name][1:])

    def apply(self, name, action, *args):
        text = action(self, name, *args)
        if text:
            self.counts[name] = self.counts.get(name, 0) + 1
            self.soak.report.fault(self.clock(), f"{name}: {text}")

    # -- undo ---------------------------------------------------------------

    def schedule(self, delay, label, undo):
        entry = [self.clock() + delay, next(self.seq), label, undo]
        heapq.heappush(self.pending, entry)
        return entry

    def run_due(self, everything=False):
        while self.pending and (everything or self.pending[0][0] <= self.clock()):
            _, _, label, undo = heapq.heappop(self.pending)
            text = undo()
            if text:
                self.soak.report.fault(self.clock(), f"  undo {label}: {text}")

    def run_now(self, entry):
        """Run one scheduled undo ahead of time."""
        self.pending.remove(entry)
        heapq.heapify(self.pending)
        text = entry[3]()
        if text:
            self.soak.report.fault(self.clock(), f"  undo {entry[2]} (early): {text}")

    def undo_all(self):
        self.run_due(everything=True)

    # -- targets ----------------------------------------------------------

    def resting(self, now):
        """The scanner that targeted faults leave alone at `now`."""
        position = (now - self.started) % sum(length for _, length in self.rest_order)
        for worker, length in self.rest_order:
            if position < length:
                return worker
            position -= length
        return None

    def targets(self, include_api=True):
        """Workers a targeted fault may hit now."""
        scanners = [] if self.hang_symbol else [w for w in SCANNERS if w != self.resting(self.clock())]
        return scanners + (["api"] if include_api else [])

    def plan_hang(self, duration):
        """When the one hung-symbol episode starts (a clock time), or None if skipped or it does not fit."""
        if "hang" in self.skip:
            return None
        if duration < HANG_LENGTH[1] + 40.0:
            self.soak.report.note(f"hang: not applied, the soak is shorter than {HANG_LENGTH[1] + 40:g}s")
            return None
        latest = duration - HANG_LENGTH[1] - 20.0
        return self.started + self.rng.uniform(min(20.0, latest), min(max(20.0, duration * 0.35), latest))


ACTIONS = {
    "kill": ("signal_worker", signal.SIGKILL), "stop": ("signal_worker", signal.SIGSTOP),
    "segv": ("signal_worker", signal.SIGSEGV), "term": ("signal_worker", signal.SIGTERM),
    "api-kill": ("signal_serving", signal.SIGKILL), "api-stop": ("signal_serving", signal.SIGSTOP),
    "api-segv": ("signal_serving", signal.SIGSEGV), "api-term": ("signal_serving", signal.SIGTERM),
    "ctl-restart": ("ctl_restart",), "ctl-stop": ("ctl_stop",), "ctl-start": ("ctl_start",),
    "api-restart": ("api_restart",), "reload": ("good_reload",), "db-lock": ("db_lock",),
    **{variant: ("broken_reload",) for variant in BROKEN},
}
assert set(ACTIONS) == set(WEIGHTS) and set(WORKERS) >= set(SCANNERS)
