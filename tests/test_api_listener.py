"""One API per port: the API's socket is its own, and a second tree on the same port fails clearly.

The failure guarded: granian's listeners shared the port with SO_REUSEPORT, so
a second tree configured on the same port (same user) started fine and both
served it, answering from two databases at random.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import urllib.request

import psutil
import pytest

from api.listener import holders, reserve
from api.server import SERVED_BY
from api.worker import EXIT_CANNOT_LISTEN, cannot_listen
from tests.api_support import child, fill, http_tree  # noqa: F401 (child: a fixture)
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll
from workers.store import StoreWriter

# every way another socket might try to share the port
SHARING_OPTIONS = {"plain": (), "SO_REUSEPORT": (socket.SO_REUSEPORT,), "SO_REUSEADDR": (socket.SO_REUSEADDR,),
                   "both": (socket.SO_REUSEADDR, socket.SO_REUSEPORT)}


def bind_error(host, port, options):
    """The errno of binding a new socket with `options` to host:port (None if it was bound)."""
    with socket.socket() as other:
        for option in options:
            other.setsockopt(socket.SOL_SOCKET, option, 1)
        try:
            other.bind((host, port))
        except OSError as error:
            return error.errno
        return None


# -- in process ----------------------------------------------------------------

def test_a_reservation_picks_a_free_port_that_no_other_socket_can_bind():
    with reserve("127.0.0.1", 0) as listener:
        port = listener.getsockname()[1]
        assert port > 0
        for name, options in SHARING_OPTIONS.items():
            assert bind_error("127.0.0.1", port, options) == errno.EADDRINUSE, name
            assert bind_error("0.0.0.0", port, options) == errno.EADDRINUSE, f"{name} on the wildcard address"


@pytest.mark.parametrize("options", SHARING_OPTIONS.values(), ids=SHARING_OPTIONS.keys())
def test_a_port_in_use_is_found_by_the_reservation_whatever_the_holder_allows(options):
    with socket.socket() as taken:
        for option in options:
            taken.setsockopt(socket.SOL_SOCKET, option, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError) as error:
            reserve("127.0.0.1", taken.getsockname()[1]).close()
        assert error.value.errno == errno.EADDRINUSE


def test_the_message_for_a_port_in_use_names_the_address_and_the_holder():
    with reserve("127.0.0.1", 0) as listener:
        port = listener.getsockname()[1]
        assert holders(port) == [f"pid {os.getpid()} ({psutil.Process().name()})"]
        with pytest.raises(OSError) as error:
            reserve("127.0.0.1", port)
        message = cannot_listen("127.0.0.1", port, error.value)
    assert message.startswith(f"cannot listen on 127.0.0.1:{port}: another process holds the port "
                              f"(Address already in use, pid {os.getpid()} ")
    assert cannot_listen("::1", 8000, OSError(errno.EACCES, "Permission denied")) \
        == "cannot listen on [::1]:8000: Permission denied (check [api] host and port)"


# -- real processes ------------------------------------------------------------

def listening_socket_inodes(pid, port):
    """The inodes of the sockets process `pid` listens on `port` with."""
    inodes = set()
    for conn in psutil.Process(pid).net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port:
            inodes.add(os.readlink(f"/proc/{pid}/fd/{conn.fd}"))
    return inodes


def served(port, path="/api/watchlist"):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
        return int(response.headers[SERVED_BY]), json.loads(response.read())


def test_every_serving_process_accepts_on_the_api_workers_one_socket(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2)
        port = c.wait_port()
        manager, serving = http_tree(c, 2)
        ours = listening_socket_inodes(c.proc.pid, port)
        assert len(ours) == 1
        for p in [manager, *serving]:
            assert listening_socket_inodes(p.pid, port) == ours  # inherited, not a listener of its own
        assert poll(lambda: {served(port)[0] for _ in range(8)} == {p.pid for p in serving}, 10,
                    what="an answer from each serving process")


def test_no_socket_of_the_same_user_can_bind_the_port_of_a_running_api(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2)
        port = c.wait_port()
        http_tree(c, 2)
        for name, options in SHARING_OPTIONS.items():
            assert bind_error("127.0.0.1", port, options) == errno.EADDRINUSE, name
            assert bind_error("0.0.0.0", port, options) == errno.EADDRINUSE, f"{name} on the wildcard address"
        assert served(port)[1]["success"] is True


def test_a_second_api_on_the_same_port_exits_69_and_the_first_keeps_serving_its_own_data(child, tmp_path):
    other_store = tmp_path / "other-state"
    fill(other_store)
    writer = StoreWriter(other_store)
    writer.replace_snapshot("watchlist", [{"symbol": "ZZZZ", "price": 1.0, "daily_change": 0.0,
                                           "daily_change_pct": 0.0, "volume": 1}])
    writer.close()
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]), \
            FakeControl(other_store / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        first = child(processes=2)
        port = first.wait_port()
        _, serving = http_tree(first, 2)
        second = child(state_dir=other_store, port=port, processes=2)
        assert second.proc.wait(15) == EXIT_CANNOT_LISTEN
        assert f"ERROR api: cannot listen on 127.0.0.1:{port}: another process holds the port " \
               f"(Address already in use, pid {first.proc.pid} (" in second.stderr()
        assert second.beats() == []
        for _ in range(20):
            pid, answer = served(port)
            assert pid in {p.pid for p in serving}
            assert {row["symbol"] for row in answer["data"]} == {"AAPL", "TSLA", "NVDA", "AMD"}
        assert first.proc.poll() is None


def raw_request(port, target):
    """The status line and body of one GET of `target`, sent as raw bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], body


def test_a_long_url_is_a_json_414_from_the_app_and_only_past_the_parsers_limit_an_empty_one(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        port = child().wait_port()
        status, body = raw_request(port, b"/api/watchlist?x=" + b"a" * 20_000)
        assert status == b"HTTP/1.1 414 URI Too Long" and json.loads(body)["error"].startswith("the URL is 20016 bytes")
        status, body = raw_request(port, b"/api/watchlist?x=" + b"a" * 100_000)  # granian's own answer (README)
        assert status.startswith(b"HTTP/1.1 414") and body == b""
