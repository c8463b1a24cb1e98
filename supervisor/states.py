"""Worker states, stop reasons and the backoff rule.

This module imports nothing but the standard library so it can be read (and
tested) on its own. The state machine of one supervised child:

    STOPPED --spawn--> STARTING --first beat--> RUNNING
       ^                  |                        |
       |                  +---- stale / stop ------+--> STOPPING
       |                  |                        |        |
       |              exited on its own      exited on its own   reaped
       |                  v                        v        v
       +---- stop ---- BACKOFF / FLAPPING <--------+--------+ (a failure)
                          |
                          +--backoff elapsed--> STARTING

A child that was stopped on purpose (manual stop or restart, config change,
shutdown) goes STOPPING -> STOPPED; every other exit is a failure and goes to
BACKOFF, or to FLAPPING once it has failed FLAPPING_AFTER times in a row
without ever running for `stable_after` seconds. FLAPPING behaves exactly like
BACKOFF (the supervisor keeps retrying at the backoff cap and never gives up);
it exists so that a crash loop is visible in status, logs and metrics.
"""
import enum
import random


class WorkerState(enum.Enum):
    STOPPED = "STOPPED"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"
    BACKOFF = "BACKOFF"
    FLAPPING = "FLAPPING"


S = WorkerState

# A process exists (and must eventually be reaped) in these states.
PROCESS_STATES = frozenset({S.STARTING, S.RUNNING, S.STOPPING})
# The child is alive and expected to beat.
RUNNING_STATES = frozenset({S.STARTING, S.RUNNING})
# No process; waiting for the backoff delay before the next spawn.
WAITING_STATES = frozenset({S.BACKOFF, S.FLAPPING})

ALLOWED_TRANSITIONS = {
    S.STOPPED: frozenset({S.STARTING}),
    S.STARTING: frozenset({S.RUNNING, S.STOPPING, S.BACKOFF, S.FLAPPING}),
    S.RUNNING: frozenset({S.STOPPING, S.BACKOFF, S.FLAPPING}),
    S.STOPPING: frozenset({S.STOPPED, S.BACKOFF, S.FLAPPING}),
    S.BACKOFF: frozenset({S.STARTING, S.STOPPED}),
    S.FLAPPING: frozenset({S.STARTING, S.STOPPED}),
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
