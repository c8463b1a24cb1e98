"""The control server in-process: real sockets, a selector, and a clock the test moves.

Each test drives ControlServer the way the loop does (on_ready for ready fds,
check_idle every pass, publish for log lines) and checks that what a client
does costs at most that client's connection.
"""
import errno
import json
import logging
import select
import selectors
import socket

import pytest

from supervisor import control
from supervisor.control_pressure import PAUSE_FIRST
from tests.proctree import poll


class SelectorHost:
    """The watch/unwatch/want_write seam of PosixHost, over a real selector."""

    def __init__(self):
        self.selector = selectors.DefaultSelector()

    def watch(self, fd):
        self.selector.register(fd, selectors.EVENT_READ)

    def unwatch(self, fd):
        try:
            self.selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def want_write(self, fd, flag, read=True):
        self.selector.modify(fd, (selectors.EVENT_READ if read else 0) | (selectors.EVENT_WRITE if flag else 0))

    def watched(self, fd):
        return fd in self.selector.get_map()


class Served:
    """A ControlServer, the loop's calls into it, and client sockets; all closed by the fixture."""

    def __init__(self, tmp_path, handler):
        self.host = SelectorHost()
        self.now = 1000.0
        self.path = str(tmp_path / "mdwd.sock")
        self.server = control.ControlServer(self.path, self.host, handler)
        self.clients = []

    def run_once(self):
        for key, _ in self.host.selector.select(0.01):
            if self.server.owns(key.fd):
                self.server.on_ready(key.fd, self.now)
        self.server.check_idle(self.now)

    def connect(self, request=None):
        sock = socket.socket(socket.AF_UNIX)
        self.clients.append(sock)
        sock.connect(self.path)
        sock.setblocking(False)
        if request is not None:
            sock.sendall(json.dumps(request).encode() + b"\n")
        return sock

    def answer(self, sock):
        """Run the loop until `sock` has a whole line (decoded), or EOF (None)."""
        received = bytearray()

        def line_or_eof():
            self.run_once()
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                return False
            received.extend(data)
            return not data or b"\n" in received
        poll(line_or_eof, 5, interval=0, what="an answer")
        return json.loads(received.split(b"\n")[0]) if received else None

    def settle(self, passes=5):
        for _ in range(passes):
            self.run_once()

    def close(self):
        for sock in self.clients:
            sock.close()
        self.server.close()
        self.host.selector.close()


def commands(request):
    if request["cmd"] == "explode":
        raise RuntimeError("a bug in a command")
    if request["cmd"] == "tail":
        return {"ok": True, "lines": []}, request["names"][0]
    if request["cmd"] == "big":
        return {"ok": True, "blob": "x" * (4 * 2**20)}, None
    return {"ok": True, "cmd": request["cmd"]}, None


@pytest.fixture
def served(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mdwd")
    served = Served(tmp_path, commands)
    yield served
    served.close()


def test_a_command_that_raises_costs_its_connection_not_the_loop(served, caplog):
    assert served.answer(served.connect({"cmd": "explode"})) == control.INTERNAL_ERROR
    failure = [r for r in caplog.records if "serving pid" in r.getMessage()]
    assert "(explode) failed" in failure[0].getMessage() and failure[0].exc_info[0] is RuntimeError
    assert served.server.connections == {}
    assert served.answer(served.connect({"cmd": "status"})) == {"ok": True, "cmd": "status"}


def test_a_bad_request_is_answered_and_logged(served, caplog):
    sock = served.connect()
    sock.sendall(b"[" * 5000 + b"\n")
    answer = served.answer(sock)
    assert answer["kind"] == "usage" and "nested deeper" in answer["error"]
    assert any("bad request from pid" in r.getMessage() for r in caplog.records)


def test_a_follower_that_breaks_is_dropped_and_the_others_still_get_lines(served, caplog):
    good, bad = served.connect({"cmd": "tail", "names": ["alpha"]}), served.connect({"cmd": "tail", "names": ["alpha"]})
    assert served.answer(good)["ok"] and served.answer(bad)["ok"]
    broken = [c for c in served.server.connections.values() if c.follows][-1]

    class Exploding:  # a socket whose send fails in a way nobody planned for
        def send(self, data):
            raise RuntimeError("unexpected")

        def close(self):
            real.close()

    real, broken.sock = broken.sock, Exploding()
    served.server.publish("alpha", ["line one", "line two"])  # must not raise
    assert served.answer(good) == {"line": "line one"}
    assert broken.closed and broken.fd not in served.server.connections
    assert served.answer(bad) is None  # its client sees the connection end
    assert any("serving pid" in r.getMessage() and r.exc_info for r in caplog.records)


def test_the_oldest_connection_without_a_request_makes_room_and_followers_stay(served, monkeypatch):
    monkeypatch.setattr(control, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(control, "MAX_FOLLOWERS", 2)
    followers = [served.connect({"cmd": "tail", "names": ["alpha"]}) for _ in range(2)]
    assert all(served.answer(f)["ok"] for f in followers)
    served.now += 1
    oldest, newer = served.connect(), served.connect()
    served.settle()
    assert len(served.server.connections) == 4
    served.now += 1
    assert served.answer(served.connect({"cmd": "status"}))["ok"]
    evicted = served.answer(oldest)
    assert evicted["kind"] == "busy" and "no complete request after 1.0s" in evicted["error"]
    assert served.answer(oldest) is None  # and closed
    assert sum(c.follows is not None for c in served.server.connections.values()) == 2
    newer.sendall(b'{"cmd": "pid"}\n')
    assert served.answer(newer) == {"ok": True, "cmd": "pid"}  # the newer idle one was kept


def test_a_client_that_does_not_read_its_answer_is_dropped_after_the_timeout(served, caplog):
    slow = served.connect({"cmd": "big"})
    served.settle()
    conn = next(iter(served.server.connections.values()))
    assert conn.outbox  # 4 MB do not fit the socket buffer; the rest waits for the client
    served.now += control.IDLE_TIMEOUT
    served.settle()
    assert conn.closed and any("did not read its answer" in r.getMessage() for r in caplog.records)
    slow.close()


def test_a_client_sending_more_while_not_reading_its_answer_does_not_spin_the_loop(served):
    pushy = served.connect({"cmd": "big"})
    served.settle()
    conn = next(iter(served.server.connections.values()))
    assert conn.outbox
    pushy.sendall(b"more " * 1000)  # after its request; ignored, but it must be read, or the fd stays readable
    served.settle()
    readable = sum(1 for _ in range(20) for key, events in served.host.selector.select(0)
                   if key.fd == conn.fd and events & selectors.EVENT_READ)
    assert readable == 0


def test_a_half_closed_client_that_does_not_read_does_not_spin_the_loop(served):
    sock = served.connect({"cmd": "big"})
    sock.shutdown(socket.SHUT_WR)  # its EOF is readable for good; it does not read its (long) answer
    served.settle()
    conn = next(iter(served.server.connections.values()))
    assert conn.outbox
    wakeups = sum(1 for _ in range(20) for key, events in served.host.selector.select(0) if key.fd == conn.fd)
    assert wakeups == 0


def test_a_half_closed_client_still_gets_the_whole_of_a_long_answer(served):
    sock = served.connect({"cmd": "big"})
    sock.shutdown(socket.SHUT_WR)
    received = bytearray()

    def whole_answer():
        served.run_once()
        try:
            data = sock.recv(2**20)
        except BlockingIOError:
            return False
        received.extend(data)
        return not data
    poll(whole_answer, 10, interval=0, what="the end of the answer")
    assert len(json.loads(received)["blob"]) == 4 * 2**20


def test_a_flood_of_connects_cannot_keep_the_loop_in_accept(served):
    for _ in range(control.ACCEPTS_PER_PASS + 10):
        served.connect()
    served.server.on_ready(served.server.listener.fileno(), served.now)
    assert len(served.server.connections) == control.ACCEPTS_PER_PASS
    assert select.select([served.server.listener], [], [], 0)[0], "the other 10 wait for the next pass"


class FailingListener:
    """The real listener, but accept() fails with `error` while it is set (EMFILE: the process is out of fds)."""

    def __init__(self, real):
        self.real, self.error, self.calls = real, None, 0

    def fileno(self):
        return self.real.fileno()

    def accept(self):
        self.calls += 1
        if self.error:
            raise OSError(self.error, "Too many open files")
        return self.real.accept()

    def close(self):
        self.real.close()


def test_emfile_pauses_the_listener_and_resumes_it_with_a_line_at_each_end(served, caplog):
    listener = served.server.listener = FailingListener(served.server.listener)
    listener.error = errno.EMFILE
    waiting = served.connect({"cmd": "status"})
    served.settle(50)  # a spinning loop would call accept() 50 times
    assert listener.calls == 1 and not served.host.watched(listener.fileno())
    assert served.server.next_deadline() == pytest.approx(served.now + PAUSE_FIRST)
    served.now += PAUSE_FIRST
    served.settle(50)  # resumed, failed again: paused twice as long
    assert listener.calls == 2 and served.server.next_deadline() == pytest.approx(served.now + 2 * PAUSE_FIRST)
    listener.error = None
    served.now += 2 * PAUSE_FIRST
    assert served.answer(waiting) == {"ok": True, "cmd": "status"}
    lines = [r for r in caplog.records if "control socket" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.ERROR, logging.INFO]
    assert "cannot accept connections (EMFILE: Too many open files)" in lines[0].getMessage()
    assert "accepting again after 0.3s; accept() failed 2 times" in lines[1].getMessage()


def test_another_accept_error_is_a_bug_that_surfaces(served):
    listener = served.server.listener = FailingListener(served.server.listener)
    listener.error = errno.EBADF
    served.connect()
    with pytest.raises(OSError):
        served.settle()
