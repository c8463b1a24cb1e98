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

from supervisor import child
from supervisor.shared import linux
from supervisor.stderr import StderrSink

log = logging.getLogger("mdwd")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGQUIT, signal.SIGUSR1,
                   signal.SIGUSR2)


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
        self.stderr = StderrSink()
        self._stderr_watched = False

    now = staticmethod(time.monotonic)
    wall = staticmethod(time.time)  # only to stamp log lines and journal events; every timeout runs on now()

    def install_signal_handlers(self):
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, _ignore)
        linux.set_child_subreaper()  # orphaned grandchildren come to us to be reaped

    def watch(self, fd):
        self.selector.register(fd, selectors.EVENT_READ)

    def want_write(self, fd, flag, read=True):
        """Also wake when `fd` becomes writable (a socket with output pending); `read` False stops
        waking for input (a client that has half-closed, whose EOF would otherwise wake us forever)."""
        events = (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if flag else 0)
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
        self._watch_stderr()
        fds, signals = [], []
        for key, _ in self.selector.select(max(0.0, timeout)):
            if key.fd == self._wake_r:
                signals.extend(self._drain(self._wake_r, 4096) or b"")
            elif key.fd == self.stderr.fd and self._stderr_watched:
                self.stderr.flush()
            else:
                fds.append(key.fd)
        self._watch_stderr()
        return fds, [signal.Signals(s) for s in signals if s in signal.Signals._value2member_map_]

    def _watch_stderr(self):
        """Wake for our own stderr only while output waits for it."""
        wants = self.stderr.wants_write
        if wants and not self._stderr_watched:
            self.selector.register(self.stderr.fd, selectors.EVENT_WRITE)
        elif self._stderr_watched and not wants:
            self.selector.unregister(self.stderr.fd)
        self._stderr_watched = wants

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

    def spawn(self, spec, handed_over, secret_env=()):
        """Fork a child for `spec`; return (pid, heartbeat read fd, log read fd).

        `secret_env`: the environment variables holding secrets; the child keeps
        only those its kind asks for (spec.secrets)."""
        heartbeat_r, heartbeat_w = os.pipe()
        try:
            log_r, log_w = os.pipe()
        except OSError:
            _close(heartbeat_r, heartbeat_w)
            raise
        sys.stdout.flush()
        sys.stderr.flush()
        gc.freeze()  # keep the preloaded heap out of the children's collections: fewer copied pages
        old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = self._fork()
            if pid == 0:
                child.run_child(spec, handed_over, heartbeat_w, log_w, self.pid, HANDLED_SIGNALS, secret_env)
        except OSError:  # EAGAIN, ENOMEM: no child; none of its four pipe ends may leak
            _close(heartbeat_r, heartbeat_w, log_r, log_w)
            raise
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

    _fork = staticmethod(os.fork)

    def reap_leftovers(self, timeout):
        """At exit: SIGKILL every process still our child and reap it, for up to `timeout` seconds.

        As a subreaper we adopt the orphans of our workers' trees; leaving them
        (or their zombies) to init would break "nothing survives mdwd"."""
        deadline = self.now() + timeout
        reaped = []
        while True:
            for pid in linux.children(self.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            reaped.extend(self.reap())
            if not self._has_children() or self.now() >= deadline:
                return reaped
            time.sleep(0.005)

    @staticmethod
    def _has_children():
        try:
            os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            return True
        except ChildProcessError:
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
            except (OSError, ValueError, IndexError):  # gone, or no fd left to look (EMFILE): unknown
                if current == pid:
                    return None
                continue
            stack.extend(linux.children(current))
        return total / 2**20

    def write_log(self, data):
        """Write log output to our stderr; a full or broken stderr never stops the loop (stderr.py)."""
        self.stderr.write(data)

    def flush_log(self):
        """At exit: give what waits for stderr a last chance, without blocking."""
        self.stderr.flush()


def _close(*fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
