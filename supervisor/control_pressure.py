"""What the control socket does under pressure: out of slots (Evictions).

Evictions logs a bounded number of lines however many connections are
closed to make room: the first one, then a count at most once per
REMIND_EVERY.
"""
import logging

log = logging.getLogger("mdwd")
REMIND_EVERY = 60.0  # seconds between summary lines


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
