"""The control socket, served inside the supervisor's single-threaded loop.

A unix stream socket (mode 0600) in the runtime dir. Each connection sends
one JSON request line and gets one JSON answer line (see control_client.py);
`tail` with follow keeps the connection and streams lines. Nothing here ever
blocks: sockets are non-blocking, input and output are bounded, and a client
that sends nothing, sends too much or stops reading is disconnected. Clients
of another uid than ours (or root) are refused (SO_PEERCRED).

One client costs at most its own connection: whatever goes wrong serving it
(a request that does not decode, see control_request.py; a command that
raises; a socket error) is answered with an error if it can be, logged, and
the connection closed; the loop goes on.

Room for the owner: at most MAX_CONNECTIONS connections are open, of which at
most MAX_FOLLOWERS follow a log. When a new connection needs a slot, the
oldest connection without a complete request is closed to make room (then
the oldest one whose answer is not read yet), so a client that sends its
request at once is always served. When accept() fails for want of fds or
memory, accepting pauses instead of spinning (see control_pressure.py).
"""
import errno
import json
import logging
import os
import socket
import stat
import struct

from supervisor.control_pressure import AcceptPause, Evictions
from supervisor.control_request import MAX_REQUEST, RequestError, decode_request

log = logging.getLogger("mdwd")
MAX_PENDING_OUTPUT = 8 * 2**20
IDLE_TIMEOUT = 10.0  # seconds to send a complete request, and again to read the answer
MAX_CONNECTIONS = 64
MAX_FOLLOWERS = 16  # `tail -f` connections; the other slots stay free for requests
BACKLOG = 128  # a burst of MAX_CONNECTIONS clients connecting at once fits, twice over
ACCEPTS_PER_PASS = MAX_CONNECTIONS  # a flood of connects cannot keep the loop in accept()
OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
INTERNAL_ERROR = {"ok": False, "kind": "internal", "error": "mdwd failed serving this request; its log says why"}
assert MAX_FOLLOWERS < MAX_CONNECTIONS  # so a slot can always be made for a new request


def encode(message):
    return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


class Connection:
    def __init__(self, sock, now):
        self.sock = sock
        self.fd = sock.fileno()
        self.accepted_at = now
        self.peer = "a client"  # "pid N" once SO_PEERCRED is read, for the log
        self.cmd = None  # the request's command, once decoded
        self.inbox = b""
        self.outbox = bytearray()
        self.deadline = now + IDLE_TIMEOUT  # to send the request, then to read the answer; None when following
        self.answered = False
        self.started = False  # some answer bytes were queued: an error can no longer be sent cleanly
        self.follows = None  # worker name whose log lines are streamed
        self.closing = False  # close once the outbox is flushed
        self.closed = False
        self.half_closed = False  # the client shut down its sending side; it may still read

    def __str__(self):
        return f"{self.peer} ({self.cmd})" if self.cmd else self.peer


class ControlServer:
    def __init__(self, path, host, handle_request):
        """`handle_request(request) -> (answer, follow_name_or_None)` runs a command."""
        self.path = str(path)
        self.host = host
        self.handle_request = handle_request
        self.connections = {}
        self.pause = AcceptPause()
        self.evictions = Evictions()
        self.listener = self._listen()
        self.link = None  # a symlink to this socket at the default place (link_from), removed by close()
        host.watch(self.listener.fileno())

    def _listen(self):
        try:
            if stat.S_ISSOCK(os.lstat(self.path).st_mode):
                probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    probe.connect(self.path)
                except OSError:
                    os.unlink(self.path)  # left by an earlier mdwd that died without cleaning up
                else:
                    raise OSError(errno.EADDRINUSE, "another mdwd is already listening there")
                finally:
                    probe.close()
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # born 0600: no window in which others could connect
        try:
            sock.bind(self.path)
        finally:
            os.umask(old_umask)
        sock.listen(BACKLOG)
        sock.setblocking(False)
        return sock

    # -- what the loop calls --------------------------------------------------

    def owns(self, fd):
        return fd == self.listener.fileno() or fd in self.connections

    def on_ready(self, fd, now):
        """The listener or a connection is readable (or writable, with output pending)."""
        if fd == self.listener.fileno():
            self._accept(now)
            return
        conn = self.connections.get(fd)
        if conn is not None:
            self._guarded(conn, self._serve_ready, now)

    def publish(self, name, lines):
        """New log lines of worker `name`, for the `tail -f` followers."""
        followers = [c for c in self.connections.values() if c.follows == name]
        if followers:
            data = b"".join(encode({"line": line}) for line in lines)
            for conn in followers:
                self._guarded(conn, self._queue, data)

    def check_idle(self, now):
        """Every pass: resume a paused listener, and time out connections past their deadline."""
        if self.pause.due(now):
            self.pause.resume()
            self.host.watch(self.listener.fileno())
            self._accept(now)  # fails at once if fds are still short (the kernel takes the fd first)
        self.pause.remind(now)
        self.evictions.remind(now)
        for conn in list(self.connections.values()):
            if conn.deadline is not None and now >= conn.deadline:
                self._guarded(conn, self._time_out, now)

    def next_deadline(self):
        deadlines = [c.deadline for c in self.connections.values() if c.deadline is not None]
        if self.pause.resume_at is not None:
            deadlines.append(self.pause.resume_at)
        return min(deadlines, default=None)

    # -- accepting --------------------------------------------------------------

    def _accept(self, now):
        for _ in range(ACCEPTS_PER_PASS):
            sock = self._accept_one(now)
            if sock is None:
                return
            self._admit(sock, now)

    def _accept_one(self, now):
        """A new client socket, or None when none is waiting (or accepting has just been paused)."""
        while True:
            try:
                sock, _ = self.listener.accept()
            except BlockingIOError:
                self.pause.working(now)  # no client waiting, and no shortage either
                return None
            except InterruptedError:
                return None
            except ConnectionAbortedError:
                continue  # that client gave up while queued; the next one may be there
            except OSError as e:
                if e.errno not in OUT_OF_RESOURCES:
                    raise
                self.host.unwatch(self.listener.fileno())  # else the waiting client keeps it readable: a spin
                self.pause.begin(e, now)
                return None
            self.pause.working(now)
            return sock

    def _admit(self, sock, now):
        sock.setblocking(False)
        self._make_room(now)
        conn = Connection(sock, now)
        self.connections[conn.fd] = conn
        self._guarded(conn, self._greet, now)

    def _greet(self, conn, now):
        """Check who it is; serve at once a request that came with the connection."""
        self.host.watch(conn.fd)
        pid, uid, _ = struct.unpack("3i", conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        conn.peer = f"pid {pid}"
        if uid not in (os.getuid(), 0):
            log.warning("control socket: refused %s of uid %d", conn.peer, uid)
            self._answer(conn, {"ok": False, "kind": "denied", "error": f"uid {uid} may not control mdwd"}, now)
        else:
            self._receive(conn, now)

    def _make_room(self, now):
        """Close connections until a new one fits: first the oldest without a request, then slow readers."""
        while len(self.connections) >= MAX_CONNECTIONS:
            candidates = [c for c in self.connections.values() if c.follows is None]
            if not candidates:
                return  # cannot happen while MAX_FOLLOWERS < MAX_CONNECTIONS
            victim = min(candidates, key=lambda c: (c.answered, c.accepted_at))
            if not victim.answered:
                self._send_last_words(victim, {
                    "ok": False, "kind": "busy", "error": f"closed with no complete request after "
                    f"{now - victim.accepted_at:.1f}s to make room: {MAX_CONNECTIONS} control connections in use"})
            self.evictions.note(now, len(self.connections))
            self._close(victim)

    # -- serving a connection ---------------------------------------------------

    def _guarded(self, conn, step, *args):
        """Run one step of serving `conn`; if it raises, that costs the connection, never the loop."""
        try:
            step(conn, *args)
        except Exception:  # a bug of ours, or a command's: log it with its traceback
            log.error("control socket: serving %s failed; closing its connection", conn, exc_info=True)
            self._send_last_words(conn, INTERNAL_ERROR)
            self._close(conn)

    def _serve_ready(self, conn, now):
        self._flush(conn)
        if not conn.closed:
            self._receive(conn, now)  # even when answered: what is not read keeps the fd readable, a spin

    def _receive(self, conn, now):
        try:
            data = conn.sock.recv(MAX_REQUEST)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._drop(conn, f"receiving failed: {e}")
            return
        if not data:
            if not (conn.closing and conn.outbox):  # a half-closed client may still read the rest of its answer
                self._close(conn)
            else:
                conn.half_closed = True  # its EOF stays readable: wake only for writing from now on
                self.host.want_write(conn.fd, True, read=False)
            return
        if conn.answered:
            return  # one request per connection: ignore what a follower (or a slow reader) sends after it
        conn.inbox += data
        line, newline, _ = conn.inbox.partition(b"\n")
        if not newline and len(conn.inbox) <= MAX_REQUEST:
            return
        try:
            request = decode_request(line)
        except RequestError as e:
            log.warning("control socket: bad request from %s: %s", conn, e)
            self._answer(conn, {"ok": False, "kind": "usage", "error": str(e)}, now)
            return
        conn.cmd = request["cmd"]
        self._dispatch(conn, request, now)

    def _dispatch(self, conn, request, now):
        answer, follows = self.handle_request(request)
        if follows is not None and sum(c.follows is not None for c in self.connections.values()) >= MAX_FOLLOWERS:
            log.warning("control socket: refused `tail -f %s` from %s: %d followers already", follows, conn,
                        MAX_FOLLOWERS)
            answer, follows = {"ok": False, "kind": "busy", "error": f"too many followers: {MAX_FOLLOWERS} "
                               "`tail -f` are running; stop one, or tail without -f"}, None
        self._answer(conn, answer, now, follows)

    def _answer(self, conn, answer, now, follows=None):
        conn.answered = True
        conn.follows = follows
        conn.closing = follows is None
        conn.deadline = None if follows else now + IDLE_TIMEOUT
        self._queue(conn, encode(answer))

    def _time_out(self, conn, now):
        if not conn.answered:
            self._answer(conn, {"ok": False, "kind": "usage", "error": f"no complete request within {IDLE_TIMEOUT:g}s"},
                         now)
        else:
            self._drop(conn, f"it did not read its answer within {IDLE_TIMEOUT:g}s")

    def _queue(self, conn, data):
        if conn.closed:
            return
        if len(conn.outbox) + len(data) > MAX_PENDING_OUTPUT:
            self._drop(conn, f"it stopped reading ({len(conn.outbox)} bytes not taken)")
            return
        conn.started = True
        conn.outbox += data
        self._flush(conn)

    def _flush(self, conn):
        try:
            while conn.outbox:
                sent = conn.sock.send(conn.outbox)
                del conn.outbox[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:  # the client went away mid-answer
            self._drop(conn, f"sending failed: {e}")
            return
        if conn.outbox:
            self.host.want_write(conn.fd, True, read=not conn.half_closed)
        elif conn.closing:
            self._close(conn)
        else:
            self.host.want_write(conn.fd, False)

    def _send_last_words(self, conn, answer):
        """Best effort, one non-blocking send: an error for a client that has had no answer yet."""
        if conn.started or conn.closed:
            return
        conn.started = True
        try:
            conn.sock.send(encode(answer))
        except OSError:
            pass

    def _drop(self, conn, why):
        log.info("control socket: closing the connection of %s: %s", conn, why)
        self._close(conn)

    def _close(self, conn):
        if conn.closed:
            return
        conn.closed = True
        del self.connections[conn.fd]
        self.host.unwatch(conn.fd)
        conn.sock.close()

    def link_from(self, where):
        """Point `where` (the default state dir's socket) at this socket, so that mdwctl finds an mdwd
        started with --state-dir from any directory. A real socket there (a default mdwd's) is left
        alone; an old link is replaced. Called once, before the loop; a failure costs only the link."""
        where = os.path.abspath(where)
        if where == os.path.abspath(self.path):
            return
        try:
            if os.path.lexists(where) and not os.path.islink(where):
                log.info("not linking %s to this mdwd's socket: another mdwd's socket is there", where)
                return
            os.makedirs(os.path.dirname(where), mode=0o700, exist_ok=True)
            temporary = f"{where}.{os.getpid()}.link"
            os.symlink(self.path, temporary)
            os.replace(temporary, where)
            self.link = where
            log.info("%s points at this mdwd's socket, for mdwctl from any directory", where)
        except OSError as e:
            log.warning("cannot link %s to the control socket (%s); mdwctl --socket %s still works",
                        where, e.strerror or e, self.path)

    def close(self):
        for conn in list(self.connections.values()):
            self._close(conn)
        self.host.unwatch(self.listener.fileno())
        self.listener.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        try:
            if self.link and os.readlink(self.link) == self.path:
                os.unlink(self.link)
        except OSError:
            pass  # replaced by a later mdwd, or already gone
