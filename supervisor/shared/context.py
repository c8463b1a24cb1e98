"""What a worker's code sees of its supervisor: settings, and a heartbeat pipe.

A worker calls `beat(phase, item)` from its own work loop before each unit of
work (never from a side thread: a stuck loop must go silent), `cycle(...)`
after each cycle, and `idle(seconds)` between cycles. If the supervisor has
gone away (the pipe is broken) the worker exits: nobody would watch it.
"""
import errno
import logging
import os
import time

from supervisor.shared import protocol

log = logging.getLogger("worker")
EXIT_SUPERVISOR_GONE = 75


class WorkerContext:
    def __init__(self, spec, heartbeat_fd, handed_over=None):
        self.spec = spec
        self.name = spec.name
        self.interval = spec.interval
        self.options = dict(spec.options)
        self.state_dir = spec.state_dir
        # protocol.Beat: what the previous incarnation was doing when it was killed for a hang, or None.
        self.handed_over = handed_over
        self._fd = heartbeat_fd
        # Beat at least this often while idle, so that waiting between cycles never looks hung.
        self.idle_beat_every = max(0.01, min(spec.interval, spec.heartbeat_timeout / 3))

    def beat(self, phase, item=None):
        self._send(protocol.encode_beat(phase, item))

    def hung_on(self, phase, item):
        """Was `item` (in `phase`) what the previous incarnation was doing when it was killed?"""
        return self.handed_over is not None and self.handed_over.names(phase, item)

    def cycle(self, ok, duration, counts=None, error=None):
        self._send(protocol.encode_cycle(ok, duration, counts, error))

    def report(self, quarantined=(), provider_requests=None, warnings=(), schedule=None, counters=None):
        """Worker status shown by the supervisor: quarantined items (the first few, and their
        total), request counts by provider and outcome, warnings a person must act on
        soon (shown until a report without them), the schedule it works on and its own
        counters (both passed through for the API). Always fits one message."""
        self._send(protocol.encode_status(quarantined, provider_requests, warnings, schedule, counters))

    def idle(self, seconds, phase="idle"):
        """Sleep `seconds` between cycles, beating often enough to stay fresh."""
        deadline = time.monotonic() + seconds
        while True:
            self.beat(phase)
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, self.idle_beat_every))

    def _send(self, data):
        try:
            os.write(self._fd, data)  # < PIPE_BUF: atomic, all or nothing
        except BlockingIOError:
            pass  # the pipe is full: the supervisor is not reading, and will see us as silent
        except OSError as e:
            if e.errno in (errno.EPIPE, errno.EBADF):
                log.error("heartbeat pipe closed: the supervisor is gone; exiting")
                os._exit(EXIT_SUPERVISOR_GONE)
            raise
