"""ControlClient against a listener whose backlog is full: wait for room (within the timeout), then say so."""
import socket
import threading
import time

import pytest

from supervisor.shared import control_client
from supervisor.shared.control_client import ControlClient, ControlError


@pytest.fixture
def full_listener(tmp_path):
    """A listening socket nobody accepts on, its backlog filled; (listener, path)."""
    path = str(tmp_path / "full.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(0)
    queued = []
    while True:
        sock = socket.socket(socket.AF_UNIX)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError:  # EAGAIN: what a client meets when mdwd's backlog is full
            sock.close()
            break
        queued.append(sock)
    assert queued, "the backlog took no connection at all"
    yield listener, path
    for sock in queued:
        sock.close()
    listener.close()


def test_client_waits_for_room_in_a_full_backlog_instead_of_giving_up(full_listener, monkeypatch):
    listener, path = full_listener
    retried = threading.Event()
    sleep = time.sleep
    monkeypatch.setattr(control_client.time, "sleep", lambda s: (retried.set(), sleep(s)))
    result = {}

    def ask():
        try:
            result["answer"] = ControlClient(path, timeout=10).call("pid")
        except ControlError as e:
            result["answer"] = str(e)

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        assert retried.wait(10), "the client never met the full backlog"
        listener.settimeout(10)
        while True:  # make room: take the queued connections until the client's, which says something
            conn, _ = listener.accept()
            conn.settimeout(0.2)
            try:
                request = conn.recv(4096)
            except socket.timeout:
                conn.close()
                continue
            break
        assert request == b'{"cmd": "pid"}\n'
        conn.sendall(b'{"ok": true, "pid": 1}\n')
        conn.close()
    finally:
        asker.join(15)
    assert result["answer"] == {"ok": True, "pid": 1}


def test_client_gives_up_on_a_full_backlog_after_its_timeout_saying_why(full_listener):
    _, path = full_listener
    started = time.monotonic()
    with pytest.raises(ControlError, match="too busy: its queue of connections stayed full for 0.3s"):
        ControlClient(path, timeout=0.3).call("status")
    assert 0.2 < time.monotonic() - started < 5


def test_client_reports_a_dead_mdwd_at_once(tmp_path):
    """ECONNREFUSED on a unix socket means nothing listens there (mdwd died and left the file): no retrying."""
    path = str(tmp_path / "stale.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    listener.close()  # the file stays
    started = time.monotonic()
    with pytest.raises(ControlError, match="Connection refused; is mdwd running"):
        ControlClient(path, timeout=30).call("status")
    assert time.monotonic() - started < 5  # not the 30 s timeout
