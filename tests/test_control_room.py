"""The owner can always get `status`: idle connections, followers and bursts cannot lock mdwctl out."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from supervisor.shared.control_client import ControlClient

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}
FOLLOW = b'{"cmd": "tail", "names": ["alpha"], "lines": 0, "follow": true}\n'


@pytest.fixture
def tree(make_tree):
    tree = make_tree({"alpha": GOOD}).start()
    tree.wait_log(r"ready: 1/1 healthy")
    return tree


@pytest.fixture
def sockets():
    """Client sockets a test opens; all closed when it ends."""
    opened = []

    def open_one(path, blocking_connect=True):
        """A blocking connect waits for room in a full backlog; a non-blocking one fails with EAGAIN."""
        sock = socket.socket(socket.AF_UNIX)
        opened.append(sock)
        sock.settimeout(None if blocking_connect else 0)
        sock.connect(path)
        sock.settimeout(10)
        return sock

    yield open_one
    for sock in opened:
        sock.close()


def socket_path(tree):
    return str(tree.dir / "state" / "mdwd.sock")


def mdwctl(tree, *args):
    return subprocess.run([sys.executable, "-m", "supervisor.ctl", "--socket", socket_path(tree), *args],
                          capture_output=True, text=True, timeout=30)


def first_answer(sock):
    line = sock.makefile("rb").readline()
    assert line, "mdwd closed the connection without answering"
    return json.loads(line)


def test_idle_connections_cannot_lock_the_owner_out_of_status(tree, sockets):
    idle = [sockets(socket_path(tree)) for _ in range(100)]  # connect, never send a request
    for _ in range(3):
        result = mdwctl(tree, "status")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("alpha")
    evicted = first_answer(idle[0])  # the oldest one made room
    assert evicted["kind"] == "busy" and "no complete request" in evicted["error"]


def test_followers_cannot_lock_the_owner_out_of_status_and_the_17th_is_refused(tree, sockets):
    answers = []
    for _ in range(64):
        follower = sockets(socket_path(tree))
        follower.sendall(FOLLOW)
        answers.append(first_answer(follower))
    assert all(a["ok"] for a in answers[:16])
    refused = answers[16:]
    assert all(a["ok"] is False and a["kind"] == "busy" for a in refused)
    assert "too many followers" in refused[0]["error"] and "16" in refused[0]["error"]
    result = mdwctl(tree, "status")
    assert result.returncode == 0, result.stderr
    result = mdwctl(tree, "tail", "-f", "alpha")
    assert result.returncode == 4 and "too many followers" in result.stderr


def test_burst_of_64_clients_connecting_at_once_all_get_answers(tree, sockets):
    """All 64 connect while mdwd is frozen: they must fit its listen backlog (a full one refuses with EAGAIN)."""
    os.kill(tree.pid, signal.SIGSTOP)
    try:
        burst = []
        for _ in range(64):
            burst.append(sockets(socket_path(tree), blocking_connect=False))
    finally:
        os.kill(tree.pid, signal.SIGCONT)
    for sock in burst:
        sock.sendall(b'{"cmd": "pid"}\n')
    assert all(first_answer(sock) == {"ok": True, "pid": tree.pid} for sock in burst)


def test_burst_of_64_concurrent_clients_all_get_answers(tree):
    """64 ControlClients at once (64 mdwctl or API requests), all queued while mdwd is frozen."""
    connected = threading.Semaphore(0)

    class Client(ControlClient):
        def _connect(self):
            try:
                return super()._connect()
            finally:
                connected.release()

    results = [None] * 64

    def ask(i):
        try:
            results[i] = Client(socket_path(tree), timeout=10).call("status")["ok"]
        except Exception as e:  # noqa: BLE001 - the test reports what each client got
            results[i] = repr(e)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(64)]
    os.kill(tree.pid, signal.SIGSTOP)
    try:
        for thread in threads:
            thread.start()
        for _ in threads:
            assert connected.acquire(timeout=10), "a client is still trying to connect"
    finally:
        os.kill(tree.pid, signal.SIGCONT)
    for thread in threads:
        thread.join(30)
    assert results == [True] * 64
