"""Requests no client should send, against a real supervisor: each costs its connection, never the tree."""
import json
import socket

import psutil
import pytest

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}

# (what is wrong, the request line, a phrase the error must carry)
MALFORMED = [
    ("nesting 1,500 arrays deep", b"[" * 1500, "nested deeper than"),
    ("nesting 10,000 objects deep", b'{"a":' * 10000, "nested deeper than"),
    ("nesting inside cmd's place", b'{"cmd":' + b"[" * 3000, "nested deeper than"),
    ("bad UTF-8", b'{"cmd":"status\xff\xfe"}', "not UTF-8"),
    ("a float overflowing", b'{"cmd":"status","lines":1e999}', "too large"),
    ("a 5,000-digit int", b'{"cmd":"tail","names":["alpha"],"lines":' + b"9" * 5000 + b"}", "digits"),
    ("NaN", b'{"cmd":"status","lines":NaN}', "NaN"),
    ("-Infinity", b"-Infinity", "Infinity"),
    ("a list", b'["status"]', "not an object"),
    ("a string", b'"status"', "not an object"),
    ("cmd not a string", b'{"cmd":["status"]}', "'cmd'"),
    ("names not a list", b'{"cmd":"status","names":"alpha"}', "'names'"),
    ("names not strings", b'{"cmd":"status","names":[1,{"a":2}]}', "'names'"),
    ("a lone surrogate", b'{"cmd":"status","names":["\\ud800"]}', "surrogate"),
    ("not JSON at all", b"status please", "not valid JSON"),
]


@pytest.fixture
def tree(make_tree):
    tree = make_tree({"alpha": GOOD, "beta": GOOD}).start()
    tree.wait_log(r"ready: 2/2 healthy")
    return tree


def socket_path(tree):
    return str(tree.dir / "state" / "mdwd.sock")


def ask_raw(path, line):
    """Send `line` and a newline on a new connection; the first answer line, decoded."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(path)
        sock.sendall(line + b"\n")
        answer = b""
        while b"\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    assert answer, f"mdwd closed the connection without answering {line[:40]!r}"
    return json.loads(answer.split(b"\n")[0])


def test_malformed_requests_get_an_error_and_the_tree_lives(tree):
    for what, line, phrase in MALFORMED:
        answer = ask_raw(socket_path(tree), line)
        assert answer["ok"] is False and answer["kind"] == "usage", what
        assert phrase in answer["error"], f"{what}: {answer['error']}"
    assert tree.proc.poll() is None, tree.log()[-3000:]
    assert ControlClient(socket_path(tree)).call("status")["ok"]
    assert "supervisor loop failed" not in tree.log()


def test_status_asked_while_mdwd_is_out_of_fds_does_not_kill_the_tree(tree):
    """The status command opens /proc files; without fds it fails inside the handler. That costs the request."""
    supervisor = psutil.Process(tree.pid)
    base = supervisor.num_fds()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(socket_path(tree))
        poll(lambda: supervisor.num_fds() > base, 5, what="mdwd to accept the connection")
        limits = supervisor.rlimit(psutil.RLIMIT_NOFILE)
        supervisor.rlimit(psutil.RLIMIT_NOFILE, (3, limits[1]))  # no new fd for mdwd from now on
        try:
            sock.sendall(b'{"cmd": "status"}\n')
            answer = json.loads(sock.makefile("rb").readline())
        finally:
            supervisor.rlimit(psutil.RLIMIT_NOFILE, limits)
    assert "ok" in answer  # an error (or, if the handler copes, the status): an answer either way
    assert tree.proc.poll() is None, tree.log()[-3000:]
    assert ControlClient(socket_path(tree)).call("status")["ok"]
