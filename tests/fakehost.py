"""A fake Host and systemd notifier: drive the supervisor loop on a fake clock.

`FakeHost.wait(timeout)` advances the clock to the next scheduled event or by
`timeout`, whichever comes first, then runs the events that are due. Fake
processes die on SIGTERM (unless told to ignore it) and always on SIGKILL; the
exit is reaped on the next pass, as with SIGCHLD.
"""
import heapq
import itertools
import os
import signal

from supervisor.shared import protocol


class FakeProcess:
    def __init__(self, pid, spec, handed_over, heartbeat_fd, log_fd):
        self.pid, self.spec, self.handed_over = pid, spec, handed_over
        self.heartbeat_fd, self.log_fd = heartbeat_fd, log_fd
        self.ignores_term = False
        self.signals = []
        self.alive = True
        self.reaped = False


class FakeHost:
    def __init__(self, start=1000.0):
        self.clock = start
        self.events = []  # heap of (time, seq, action)
        self.seq = itertools.count()
        self.pids = itertools.count(100)
        self.fds = itertools.count(10)
        self.processes = {}  # pid -> FakeProcess
        self.buffers = {}  # fd -> bytes waiting to be read
        self.eof = set()
        self.exits = []  # (pid, wait status) to be reaped
        self.signals = []
        self.rss = {}  # pid -> MiB
        self.output = []  # what the supervisor wrote to stderr
        self.spawn_error = None
        self.waits = []  # the timeouts the loop asked for

    # -- scripting ---------------------------------------------------------

    def now(self):
        return self.clock

    def wall(self):
        """The wall clock: a fixed day plus the fake clock (log lines' stamps)."""
        return 1_780_000_000.0 + self.clock

    def at(self, when, action):
        heapq.heappush(self.events, (when, next(self.seq), action))

    def every(self, period, action, start=None, until=float("inf")):
        def tick(when):
            if when <= until:
                action()
                self.at(when + period, lambda: tick(when + period))
        first = self.clock + period if start is None else start
        self.at(first, lambda: tick(first))

    def process_of(self, name):
        """The newest fake process of worker `name`."""
        return [p for p in self.processes.values() if p.spec.name == name][-1]

    def send(self, name, data):
        proc = self.process_of(name)
        if proc.alive:
            self.buffers[proc.heartbeat_fd] = self.buffers.get(proc.heartbeat_fd, b"") + data

    def beat(self, name, phase="work", item=None):
        self.send(name, protocol.encode_beat(phase, item))

    def cycle(self, name, ok=True):
        self.send(name, protocol.encode_cycle(ok, 0.1, {"n": 1}))

    def exit(self, pid, status):
        proc = self.processes[pid]
        if proc.alive:
            proc.alive = False
            self.exits.append((pid, status))
            self.eof.update((proc.heartbeat_fd, proc.log_fd))

    def crash(self, name, code=1):
        self.exit(self.process_of(name).pid, code << 8)

    def deliver_signal(self, signum):
        self.signals.append(signal.Signals(signum))

    # -- the Host interface ----------------------------------------------------

    def install_signal_handlers(self):
        pass

    def wait(self, timeout):
        self.waits.append(timeout)
        target = self.clock + max(0.0, timeout)
        if self.events and self.events[0][0] <= target:
            target = max(self.clock, self.events[0][0])
        self.clock = target
        while self.events and self.events[0][0] <= self.clock:
            heapq.heappop(self.events)[2]()
        ready = [fd for fd in list(self.buffers) + list(self.eof) if fd in self.buffers or fd in self.eof]
        signals, self.signals = self.signals, []
        return sorted(set(ready)), signals

    def read(self, fd, limit):
        data = self.buffers.pop(fd, b"")
        if len(data) > limit:
            self.buffers[fd], data = data[limit:], data[:limit]
        if data:
            return data
        return b"" if fd in self.eof else None

    def unwatch_and_close(self, fd):
        self.buffers.pop(fd, None)
        self.eof.discard(fd)

    def spawn(self, spec, handed_over, secret_env=()):
        if self.spawn_error:
            raise self.spawn_error
        pid = next(self.pids)
        proc = FakeProcess(pid, spec, handed_over, next(self.fds), next(self.fds))
        self.processes[pid] = proc
        return pid, proc.heartbeat_fd, proc.log_fd

    def signal_group(self, pgid, signum):
        proc = self.processes.get(pgid)
        if proc is None or proc.reaped:
            return False
        proc.signals.append(signal.Signals(signum))
        if proc.alive and (signum == signal.SIGKILL or (signum == signal.SIGTERM and not proc.ignores_term)):
            self.exit(pgid, signum)  # a wait status of "killed by signum"
        return True

    def reap(self):
        ended, self.exits = self.exits, []
        for pid, _ in ended:
            if pid in self.processes:
                self.processes[pid].reaped = True
        return ended

    def reap_leftovers(self, timeout):
        return self.reap()

    def flush_log(self):
        pass

    def tree_rss_mb(self, pid):
        return self.rss.get(pid, 10.0)

    def write_log(self, data):
        self.output.append(data.decode())


class FakeNotifier:
    """Records what would be sent to systemd; pings on the same cadence rule as the real one."""

    def __init__(self, watchdog_interval=None):
        self.watchdog_interval = watchdog_interval
        self.next_ping = 0.0
        self.messages = []  # (time, text); the time is filled in by the test's host
        self.status = None
        self.ready = False
        self.host = None

    def _record(self, text):
        self.messages.append((self.host.now() if self.host else None, text))

    def set_status(self, text):
        if text != self.status:
            self.status = text
            self._record(f"STATUS={text}")

    def send_ready(self, status):
        self.ready, self.status = True, status
        self._record("READY=1")

    def watchdog_ping(self, now):
        if self.watchdog_interval is not None and now >= self.next_ping:
            self._record("WATCHDOG=1")
            self.next_ping = now + self.watchdog_interval

    def watchdog_trigger(self):
        self._record("WATCHDOG=trigger")

    def stopping(self, status):
        self._record("STOPPING=1")

    def next_deadline(self):
        return self.next_ping if self.watchdog_interval is not None else None

    def times(self, text):
        return [t for t, m in self.messages if m == text]


def killed_by(signum):
    """The wait status of a process killed by `signum`."""
    return signum


assert os.waitstatus_to_exitcode(killed_by(signal.SIGTERM)) == -signal.SIGTERM
