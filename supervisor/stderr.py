"""The supervisor's own stderr, written without ever blocking the loop.

Every log line of the supervisor and of its children goes out through mdwd's
stderr: a terminal, a pipe, a file, or journald's stream socket. If nobody
reads it (a stopped terminal, a full pipe, a wedged journald), a plain
blocking write would stop the whole loop: no heartbeat checks, no control
socket, no watchdog pings. So:

- writes never block: for a pipe or a terminal we write through a new open
  file description of the same object (opening /proc/self/fd/2) made
  non-blocking, so the O_NONBLOCK flag does not leak to whoever shares our
  stderr (a shell, make); for a socket, each send is MSG_DONTWAIT; a regular
  file is written as it is (the page cache takes it);
- what cannot be written at once waits in a bounded buffer (BUFFER_LIMIT
  bytes), flushed when the loop sees the fd writable (`wants_write`, `flush`);
- when the buffer is full, whole writes are dropped and counted, and a notice
  saying how much was lost is written once output flows again.
"""
import errno
import os
import socket
import stat

BUFFER_LIMIT = 1 << 20


class StderrSink:
    def __init__(self, fd=2, limit=BUFFER_LIMIT):
        self.limit = limit
        self.pending = bytearray()
        self.dropped_bytes = 0
        self.dropped_writes = 0
        self.fd, self._socket = self._open(fd)

    @staticmethod
    def _open(fd):
        """(a non-blocking fd for the same output, a socket object when it is one)."""
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return None, None  # no stderr at all: everything is dropped silently
        if stat.S_ISSOCK(mode):
            return fd, socket.socket(fileno=os.dup(fd))
        if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            try:
                return os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_APPEND), None
            except OSError:
                pass  # a pipe with no reader left (writes fail with EPIPE at once), or no /proc
        return fd, None

    @property
    def wants_write(self):
        """Is output waiting for the fd to become writable?"""
        return bool(self.pending) and self.fd is not None

    def write(self, data):
        if self.fd is None:
            return
        if self.pending:
            self._queue(data)
            return
        sent = self._send(data)
        if sent < len(data):
            self._queue(data[sent:])

    def flush(self):
        """Write what waits, as far as the fd takes it; then the notice of what was dropped, if any."""
        while self.pending:
            sent = self._send(self.pending)
            if sent == 0:
                return
            del self.pending[:sent]
        if self.dropped_writes:
            notice = (f"mdwd: {self.dropped_bytes} bytes of log output ({self.dropped_writes} writes) were dropped "
                      f"while stderr was not being read\n").encode()
            self.dropped_bytes = self.dropped_writes = 0
            self.write(notice)

    def _queue(self, data):
        if len(self.pending) + len(data) > self.limit:
            self.dropped_bytes += len(data)
            self.dropped_writes += 1
        else:
            self.pending += data

    def _send(self, data):
        """Bytes written now (0 when the fd would block); an fd that is broken takes everything and drops it."""
        try:
            if self._socket is not None:
                return self._socket.send(data, socket.MSG_DONTWAIT)
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            return len(data)  # EPIPE, EBADF, EIO...: nobody can read it; never stop the loop over it
