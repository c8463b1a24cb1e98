"""The supervisor's event journal: what happened that only the supervisor knows, kept to be pulled.

The loop appends an event when it kills a worker for a failure (a hang,
with what the worker was doing), when a worker enters FLAPPING and when it
is healthy again after it, when it stops feeding the systemd watchdog
(escalation), when the tree is ready (started), when a shutdown begins
(stopping) and when every worker but those that go last has stopped
(stopped). Appending is O(1) and does nothing else: no I/O, no delivery.
Whoever wants the events asks for them over the control socket (the
`events` command) with the id of the last one it has; the alerts worker does.

Each event has an id `<boot_id>:<seq>`: boot_id is random per supervisor
start, seq counts from 1. The journal keeps the newest MAX_EVENTS; an older
one is dropped and counted (`dropped`), and a client asking from before the
oldest kept one is told how many it missed.

Standard library only.
"""
import collections
import datetime
import itertools
import os

MAX_EVENTS = 1000
MAX_ANSWER = 200  # events per `events` answer; the client asks again while `more` is true
KINDS = ("killed", "flapping", "recovered", "escalated", "started", "stopping", "stopped")


class EventJournal:
    def __init__(self, wall_clock, boot_id=None, limit=MAX_EVENTS):
        """`wall_clock()`: seconds since the epoch, for the events' `at` (people read it)."""
        self.boot_id = boot_id or os.urandom(6).hex()
        self.wall_clock = wall_clock
        self.events = collections.deque(maxlen=limit)
        self.seq = 0
        self.dropped = 0
        self.flapping = set()  # names of the workers in a crash loop, until they are healthy again

    def append(self, kind, text, **fields):
        """Record one event: its kind (one of KINDS), a line for people, and plain JSON fields."""
        assert kind in KINDS, kind
        if len(self.events) == self.events.maxlen:
            self.dropped += 1
        self.seq += 1
        at = datetime.datetime.fromtimestamp(self.wall_clock(), datetime.timezone.utc)
        self.events.append({"id": f"{self.boot_id}:{self.seq}", "seq": self.seq, "kind": kind,
                            "at": at.strftime("%Y-%m-%d %H:%M:%S"), "text": text, **fields})

    # -- what the loop notes (one line each there) -------------------------

    def note_kill(self, worker, reason, detail):
        """A worker stopped for a failure (hang, stalled, memory, protocol), with what it was doing."""
        beat = worker.last_beat
        self.append("killed", f"{worker.name} killed ({reason}: {detail})", worker=worker.name, reason=reason,
                    detail=detail, doing=beat.text() if beat else None, item=beat.item if beat else None)

    def note_flapping(self, worker):
        """A worker that has just entered FLAPPING (once per crash loop)."""
        if worker.state.value == "FLAPPING" and worker.name not in self.flapping:
            self.flapping.add(worker.name)
            why = worker.last_exit.why() if worker.last_exit else (worker.failing or "failures")
            self.append("flapping", f"{worker.name} is in a crash loop: {worker.consecutive_failures} failures in "
                        f"a row (last: {why}); retried every {worker.backoff_s:.0f}s", worker=worker.name,
                        failures=worker.consecutive_failures, last=why)

    def note_recovery(self, worker, now):
        """A worker that was in a crash loop, healthy now and running for `stable_after` (when the supervisor
        starts its backoff over): a good cycle between two crashes is not the end of the loop."""
        if worker.name in self.flapping and worker.first_beat_at is not None and \
                now - worker.first_beat_at >= worker.spec.stable_after and worker.is_healthy(now):
            self.flapping.discard(worker.name)
            self.append("recovered", f"{worker.name} is healthy again after its crash loop", worker=worker.name)

    # -- what clients ask -----------------------------------------------------

    def after(self, event_id, limit=MAX_ANSWER):
        """The answer to `events`: the events after `event_id` (all of them for an id of another
        boot, or none given), at most `limit`, and how many the client missed (dropped before it
        asked)."""
        boot, _, seq = str(event_id or "").partition(":")
        since = int(seq) if boot == self.boot_id and seq.isdigit() else 0
        first = self.events[0]["seq"] if self.events else self.seq + 1
        missed = max(0, first - since - 1)  # since 0: the events of this boot dropped before anyone asked
        start = max(0, since - first + 1)
        chosen = list(itertools.islice(self.events, start, start + limit))
        return {"boot_id": self.boot_id, "events": chosen, "missed": missed, "dropped": self.dropped,
                "more": start + len(chosen) < len(self.events)}
