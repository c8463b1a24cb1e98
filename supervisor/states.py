"""Worker states, stop reasons and the backoff rule.

This module imports nothing but the standard library so it can be read (and
tested) on its own. A worker's state says both what its process is doing and
what the supervisor means to do with it next; there is no flag beside it
("wanted", "removed") that changes its meaning.

    no process                        a process
    ----------                        ---------
    PENDING  --spawn------------->    STARTING --first beat--> RUNNING
    BACKOFF  --backoff elapsed---^       |                        |
    FLAPPING --backoff elapsed---^       +--- exits on its own ---+--> BACKOFF / FLAPPING
                                         |                        |
                                         +-- stop, then stay -----+--> STOPPING   --exit--> STOPPED
                                         +-- stop, then start ----+--> RESTARTING --exit--> PENDING (intentional)
                                         |                        |                      or BACKOFF / FLAPPING (failure)
                                         +-- removed on reload ---+--> RETIRING   --exit--> REMOVED

STOPPED is a worker stopped on purpose (mdwctl stop, shutdown): it stays
stopped until asked to start. PENDING is a worker to be started at once (its
first start, an intentional restart, a start request). A hung, stalled,
oversized or babbling child is stopped through RESTARTING with a failure
reason, so it comes back after a backoff. A stop request while a child is
being stopped redirects it (RESTARTING -> STOPPING: a manual stop during a
hang-stop ends STOPPED); removing a worker redirects it to RETIRING, adding
it back redirects it to RESTARTING. REMOVED is final: the supervisor forgets
the worker.

Every failure (a crash, a kill for a failure reason, a failed fork) counts
one consecutive failure; after FLAPPING_AFTER of them without a stable run in
between, the waiting state is FLAPPING instead of BACKOFF. FLAPPING behaves
exactly like BACKOFF (the supervisor keeps retrying at the backoff cap and
never gives up); it exists so that a crash loop is visible in status, logs
and metrics.
"""
import enum
import random


class WorkerState(enum.Enum):
    STOPPED = "STOPPED"
    PENDING = "PENDING"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    RESTARTING = "RESTARTING"
    RETIRING = "RETIRING"
    BACKOFF = "BACKOFF"
    FLAPPING = "FLAPPING"
    REMOVED = "REMOVED"


S = WorkerState

# A process exists (and must eventually be reaped) in these states.
PROCESS_STATES = frozenset({S.STARTING, S.RUNNING, S.STOPPING, S.RESTARTING, S.RETIRING})
# The child is alive and expected to beat.
RUNNING_STATES = frozenset({S.STARTING, S.RUNNING})
# A stop has been sent; the process has not been reaped yet.
STOPPING_STATES = frozenset({S.STOPPING, S.RESTARTING, S.RETIRING})
# No process; a spawn is due at the worker's next_start_at.
WAITING_STATES = frozenset({S.PENDING, S.BACKOFF, S.FLAPPING})
# Waiting after a failure (what status calls "backoff 8s").
BACKOFF_STATES = frozenset({S.BACKOFF, S.FLAPPING})
# The supervisor means to have a process running (now or after a wait).
WANTED_STATES = frozenset({S.PENDING, S.STARTING, S.RUNNING, S.RESTARTING, S.BACKOFF, S.FLAPPING})

_AFTER_A_FAILURE = {S.BACKOFF, S.FLAPPING}
ALLOWED_TRANSITIONS = {
    S.STOPPED: frozenset({S.PENDING, S.REMOVED}),
    S.PENDING: frozenset({S.STARTING, S.STOPPED, S.REMOVED} | _AFTER_A_FAILURE),  # a failed fork backs off
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.RESTARTING, S.RETIRING} | _AFTER_A_FAILURE),
    S.RUNNING: frozenset({S.STOPPING, S.RESTARTING, S.RETIRING} | _AFTER_A_FAILURE),
    S.STOPPING: frozenset({S.STOPPED, S.RESTARTING, S.RETIRING}),
    S.RESTARTING: frozenset({S.PENDING, S.STOPPING, S.RETIRING} | _AFTER_A_FAILURE),
    S.RETIRING: frozenset({S.REMOVED, S.RESTARTING}),
    S.BACKOFF: frozenset({S.STARTING, S.PENDING, S.STOPPED, S.REMOVED} | _AFTER_A_FAILURE),
    S.FLAPPING: frozenset({S.STARTING, S.PENDING, S.STOPPED, S.REMOVED, S.FLAPPING}),
    S.REMOVED: frozenset(),
}

# Consecutive failures (without a stable run in between) that make a child FLAPPING.
FLAPPING_AFTER = 3


class StopReason(enum.Enum):
    """Why a child process ended. The values are metric label values."""

    CRASH = "crash"  # exited or died on its own
    HANG = "hang"  # heartbeat went stale (or no first beat within startup_timeout)
    STALLED = "stalled"  # beating, but no successful cycle for too long
    MEMORY = "memory"  # process tree over max_rss_mb
    PROTOCOL = "protocol"  # malformed or oversized heartbeat message
    MANUAL = "manual"  # an operator asked for stop or restart
    CONFIG = "config"  # its settings changed on reload, or it was removed
    SHUTDOWN = "shutdown"  # the supervisor is stopping

    @property
    def is_failure(self):
        return self not in INTENTIONAL_REASONS


INTENTIONAL_REASONS = frozenset({StopReason.MANUAL, StopReason.CONFIG, StopReason.SHUTDOWN})


class IllegalTransition(AssertionError):
    """A worker was asked to move between two states that are not connected."""


def check_transition(old, new):
    if new not in ALLOWED_TRANSITIONS[old]:
        raise IllegalTransition(f"{old.value} -> {new.value} is not a worker state transition")


def backoff_delay(failures, initial, maximum, rng=random):
    """Seconds to wait before respawning after `failures` consecutive failures.

    Exponential from `initial`, capped at `maximum`, with +-10% jitter so that
    children failing together do not respawn in lockstep. Never above `maximum`.
    """
    if failures <= 0 or initial <= 0:
        return 0.0
    base = min(maximum, initial * 2 ** min(failures - 1, 62))
    return min(maximum, base * rng.uniform(0.9, 1.1))
