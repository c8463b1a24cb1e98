"""What the control socket does under pressure: out of fds (AcceptPause), out of slots (Evictions).

Both log a bounded number of lines however long the pressure lasts, with
counts instead of a line per event: AcceptPause when it starts, at most once
per REMIND_EVERY while it lasts, and when it ends; Evictions the first one,
then at most one line per REMIND_EVERY.

Why a pause and not a reserved spare fd: accept() failing with EMFILE leaves
the connection queued, so the listener stays readable and the loop would wake
at once, forever. The spare-fd trick (close a reserved fd, accept, refuse,
reopen) answers each refused client at once, but it helps only with EMFILE:
with ENFILE the freed fd is the system's, not ours, and ENOBUFS or ENOMEM free
nothing; and if the reopen ever fails, the spin is back. A paused listener
needs no fd and handles all four; the clients wait in the backlog (and the
client retries a full one), and are served if fds are back within their
timeout.
"""
import errno
import logging
import os

log = logging.getLogger("mdwd")
PAUSE_FIRST = 0.1  # seconds without accepting after the first failure
PAUSE_MAX = 2.0  # the pause doubles while accept() keeps failing, up to this
REMIND_EVERY = 60.0  # seconds between "still failing" lines


class AcceptPause:
    """When the listener may be watched again after accept() failed for want of fds or memory."""

    def __init__(self):
        self.resume_at = None  # set while the listener is unwatched
        self.delay = PAUSE_FIRST
        self.since = None  # when the current run of failures began (None: accept works)
        self.failures = 0  # failed accept() calls in this run
        self.error = None
        self.reminded_at = None

    def begin(self, error, now):
        """accept() failed with `error`: pause for a while (longer if it keeps failing)."""
        self.failures += 1
        self.error = error
        if self.since is None:
            self.since = self.reminded_at = now
            self.delay = PAUSE_FIRST
            log.error("control socket: cannot accept connections (%s); pausing accepts (%gs, doubling up to %gs) "
                      "until it works again; waiting clients stay queued", _describe(error), PAUSE_FIRST, PAUSE_MAX)
        else:
            self.delay = min(PAUSE_MAX, self.delay * 2)
        self.resume_at = now + self.delay

    def due(self, now):
        return self.resume_at is not None and now >= self.resume_at

    def resume(self):
        """The listener is watched again; the next accept() tells whether the cause is gone."""
        self.resume_at = None

    def working(self, now):
        """accept() worked (a connection, or none waiting): the end of a run of failures, if there was one."""
        if self.since is not None:
            log.info("control socket: accepting again after %.1fs; accept() failed %d times (%s)",
                     now - self.since, self.failures, _describe(self.error))
            self.since, self.failures, self.error = None, 0, None

    def remind(self, now):
        if self.since is not None and now - self.reminded_at >= REMIND_EVERY:
            self.reminded_at = now
            log.error("control socket: still cannot accept connections after %.0fs (%s); accept() failed %d times",
                      now - self.since, _describe(self.error), self.failures)


class Evictions:
    """Connections closed to make room for new ones: the first is logged at once, the rest summed up."""

    def __init__(self):
        self.count = 0  # not yet logged
        self.logged_at = None
        self.in_use = 0

    def note(self, now, in_use):
        self.count += 1
        self.in_use = in_use
        if self.logged_at is None or now - self.logged_at >= REMIND_EVERY:
            self._log(now)

    def remind(self, now):
        if self.count and now - self.logged_at >= REMIND_EVERY:
            self._log(now)

    def _log(self, now):
        log.warning("control socket: all %d connection slots in use; closed %d connection%s without a complete "
                    "request or not reading its answer, to make room for new ones", self.in_use, self.count,
                    "" if self.count == 1 else "s")
        self.count, self.logged_at = 0, now


def _describe(error):
    """'EMFILE: Too many open files', for the OSError accept() raised."""
    return f"{errno.errorcode.get(error.errno, error.errno)}: {os.strerror(error.errno)}"
