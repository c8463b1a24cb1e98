"""Idle connections do not starve the API's good clients, and are dropped after the header timeout.

The failure guarded: ~1,100 idle TCP connections from one local user (connect
and send nothing, or half a request) stopped the API answering anyone while
they were held. These tests assert that requests get answered, not how fast
(bench/bench_flood.py measures that). The API worker starts with systemd's
default soft RLIMIT_NOFILE, 1024, as it would in production.
"""
from __future__ import annotations

import contextlib
import http.client
import resource
import socket
import time

import pytest

from api.capacity import FD_RESERVE, MAX_CONNECTIONS_PER_PROCESS, connections_per_process, raise_open_files_limit
from tests.api_support import child, http_tree  # noqa: F401 (child: a fixture)
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll

IDLE_CONNECTIONS = 3000
SYSTEMD_SOFT_LIMIT = 1024
HALF_A_REQUEST = b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


@pytest.fixture
def open_files():
    """Room in this process for IDLE_CONNECTIONS sockets (the soft limit raised, and restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = IDLE_CONNECTIONS + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard open-files limit {hard} leaves no room for {IDLE_CONNECTIONS} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def clients():
    """Client sockets to 127.0.0.1: clients(port, n, blocking) -> a list of n; all closed afterwards."""
    held = []

    def connect(port, count, blocking=True):
        made = []
        for _ in range(count):
            sock = socket.socket()
            held.append(sock)
            made.append(sock)
            sock.setblocking(blocking)
            with contextlib.suppress(BlockingIOError):
                sock.connect(("127.0.0.1", port))
        return made

    yield connect
    for sock in held:
        sock.close()


class FakeRlimit:
    """resource's RLIMIT_NOFILE calls, on a recorded pair (soft, hard)."""
    RLIMIT_NOFILE = resource.RLIMIT_NOFILE
    RLIM_INFINITY = resource.RLIM_INFINITY

    def __init__(self, soft, hard, refuse=False):
        self.limits, self.refuse = (soft, hard), refuse

    def getrlimit(self, which):
        return self.limits

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed to raise maximum limit")
        self.limits = limits


# -- in process ----------------------------------------------------------------

@pytest.mark.parametrize("soft, hard, raised", [(1024, 524288, 524288), (4096, 4096, 4096),
                                                (1024, resource.RLIM_INFINITY, 1 << 20)])
def test_the_soft_open_files_limit_is_raised_to_the_hard_one(soft, hard, raised):
    rlimit = FakeRlimit(soft, hard)
    assert raise_open_files_limit(rlimit) == raised
    assert rlimit.limits == (raised, hard)


def test_an_open_files_limit_that_cannot_be_raised_is_kept():
    rlimit = FakeRlimit(1024, resource.RLIM_INFINITY, refuse=True)
    assert raise_open_files_limit(rlimit) == 1024 and rlimit.limits == (1024, resource.RLIM_INFINITY)


def test_connections_per_process_leave_descriptors_for_the_rest():
    assert connections_per_process(1 << 20) == MAX_CONNECTIONS_PER_PROCESS
    assert connections_per_process(1024) == 1024 - FD_RESERVE
    assert connections_per_process(200) == 100


# -- real processes ------------------------------------------------------------

def ask(port, path="/api/last_update", timeout=5.0):
    """GET `path` on a new connection: the status (an exception if not answered within `timeout`)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def open_fds(processes):
    return sum(p.num_fds() for p in processes)


def test_thousands_of_idle_connections_do_not_starve_a_normal_client(child, tmp_path, open_files, clients):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2, open_files=SYSTEMD_SOFT_LIMIT, self_check_interval=1.0)
        port = c.wait_port()
        _, serving = http_tree(c, 2)
        before = open_fds(serving)
        held = clients(port, IDLE_CONNECTIONS, blocking=False)
        poll(lambda: open_fds(serving) >= before + IDLE_CONNECTIONS, 20,
             what=lambda: f"the server to hold {IDLE_CONNECTIONS} connections (it has "
                          f"{open_fds(serving) - before}); stderr:\n{c.stderr()}")
        for sock in held[::2]:  # half of them start a request and stall
            sock.send(HALF_A_REQUEST)
        for _ in range(20):
            assert ask(port) == 200
        assert open_fds(serving) >= before + IDLE_CONNECTIONS  # still held: it was answered despite them
        assert c.proc.poll() is None


def closed_by_server(sock, deadline):
    """Whether the server closed `sock` (EOF or reset) before `deadline` (monotonic)."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        if not data:
            return True
    return False


def test_idle_connections_are_closed_by_the_server_within_the_header_timeout(child, tmp_path, clients):
    header_timeout = 1.0
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2, self_check_interval=1.0, options={"header_timeout": header_timeout})
        port = c.wait_port()
        silent, half, kept_alive = clients(port, 3)
        half.sendall(HALF_A_REQUEST)
        kept_alive.sendall(b"GET /api/last_update HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        kept_alive.settimeout(5)
        assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200 ")
        deadline = time.monotonic() + header_timeout + 4.0
        for name, sock in (("silent", silent), ("half a request", half), ("idle after an answer", kept_alive)):
            assert closed_by_server(sock, deadline), f"the {name} connection was still open {header_timeout + 4}s on"
        assert c.proc.poll() is None
