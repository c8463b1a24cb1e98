"""The seam between the supervisor loop and the operating system.

Everything the loop does to the outside world (clock, fork, signals, pipes,
waitpid, memory readings) goes through a Host, so that unit tests can drive
the loop with a fake one (tests/fakehost.py) and a fake clock.
"""
import errno
import gc
import logging
import os
import selectors
import signal
import sys
import time

from supervisor import child, linux

log = logging.getLogger("mdwd")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT)


def _ignore(signum, frame):
    """Signal handler: nothing. The byte the wake-up fd receives is the whole message."""


class PosixHost:
    def __init__(self):
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.selector.register(self._wake_r, selectors.EVENT_READ)
        self.pid = os.getpid()

    now = staticmethod(time.monotonic)

    def install_signal_handlers(self):
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, _ignore)
        linux.set_child_subreaper()  # orphaned grandchildren come to us to be reaped

    def watch(self, fd):
        self.selector.register(fd, selectors.EVENT_READ)

    def want_write(self, fd, flag):
        """Also wake when `fd` becomes writable (a socket with output pending)."""
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if flag else 0)
        if self.selector.get_key(fd).events != events:
            self.selector.modify(fd, events)

    def unwatch(self, fd):
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def unwatch_and_close(self, fd):
        self.unwatch(fd)
        os.close(fd)

    def wait(self, timeout):
        """Block up to `timeout` seconds; return (readable fds, signal numbers received)."""
        fds, signals = [], []
        for key, _ in self.selector.select(max(0.0, timeout)):
            if key.fd == self._wake_r:
                signals.extend(self._drain(self._wake_r, 4096) or b"")
            else:
                fds.append(key.fd)
        return fds, [signal.Signals(s) for s in signals if s in signal.Signals._value2member_map_]

    def read(self, fd, limit):
        """Up to `limit` bytes without blocking: b'' at EOF, None if nothing is there."""
        return self._drain(fd, limit)

    @staticmethod
    def _drain(fd, limit):
        chunks, total = [], 0
        while total < limit:
            try:
                data = os.read(fd, min(65536, limit - total))
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.EINTR,):
                    continue
                raise
            if not data:
                return b"".join(chunks) if chunks else b""
            chunks.append(data)
            total += len(data)
        return b"".join(chunks) if chunks else None

    def spawn(self, spec, handed_over):
        """Fork a child for `spec`; return (pid, heartbeat read fd, log read fd)."""
        heartbeat_r, heartbeat_w = os.pipe()
        log_r, log_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # keep the preloaded heap out of the children's collections: fewer copied pages
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                child.run_child(spec, handed_over, heartbeat_w, log_w, self.pid, HANDLED_SIGNALS)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        os.close(heartbeat_w)
        os.close(log_w)
        try:
            os.setpgid(pid, pid)  # also done by the child; whoever runs first wins the race
        except (PermissionError, ProcessLookupError):
            pass
        for fd in (heartbeat_r, log_r):
            os.set_blocking(fd, False)
            self.watch(fd)
        return pid, heartbeat_r, log_r

    def signal_group(self, pgid, signum):
        """Send `signum` to a process group; False if the group no longer exists."""
        try:
            os.killpg(pgid, signum)
            return True
        except ProcessLookupError:
            return False

    def reap(self):
        """[(pid, wait status)] of every child that has ended, without blocking."""
        ended = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return ended
            except InterruptedError:
                continue
            if pid == 0:
                return ended
            ended.append((pid, status))

    @staticmethod
    def tree_rss_mb(pid):
        """Resident memory of a process and all its descendants, in MiB (None if gone).

        Walks /proc/PID/task/TID/children rather than scanning every process on
        the machine (psutil's children() does), so it costs microseconds per
        process of the tree, whatever else runs on the box.
        """
        total, stack, seen = 0, [pid], set()
        while stack:
            current = stack.pop()
            if current in seen:
                continue
            seen.add(current)
            try:
                with open(f"/proc/{current}/statm", "rb") as f:
                    total += int(f.read().split()[1]) * PAGE_SIZE
            except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
                if current == pid:
                    return None
                continue
            stack.extend(linux.children(current))
        return total / 2**20

    @staticmethod
    def write_log(data):
        """Write log output to our stderr; a full or broken stderr never stops the loop."""
        try:
            os.write(2, data)
        except OSError:
            pass
