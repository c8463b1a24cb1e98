"""mdwctl and the control socket against a real supervisor."""
import json
import os
import re
import socket
import subprocess
import sys
import threading

import pytest

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}


def ctl(tree, *args, timeout=30):
    sock = str(tree.dir / "state" / "mdwd.sock")
    return subprocess.run([sys.executable, "-m", "supervisor.ctl", "--socket", sock, *args],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def tree(make_tree):
    tree = make_tree({"alpha": {**GOOD, "beat_log": "alpha.beats"}, "beta": GOOD}).start()
    tree.wait_log(r"ready: 2/2 healthy")
    return tree


def client(tree):
    return ControlClient(tree.dir / "state" / "mdwd.sock")


def test_status_prints_a_line_per_worker_and_exits_0(tree):
    result = ctl(tree, "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["alpha", "RUNNING"], ["beta", "RUNNING"]]
    assert "pid " in lines[0] and "uptime 0:00:0" in lines[0] and "beat " in lines[0] and "restarts 0" in lines[0]


def test_status_json_carries_the_documented_fields(tree):
    answer = json.loads(ctl(tree, "status", "--json", "alpha").stdout)
    row = answer["workers"][0]
    for field in ("name", "state", "pid", "uptime_s", "restarts", "last_beat_age_s", "last_cycle_ok_age_s", "phase",
                  "item", "last_exit", "rss_mb", "backoff_s"):
        assert field in row
    assert row["name"] == "alpha" and row["rss_mb"] > 1


def test_stopped_on_purpose_is_not_a_failure_but_a_dead_worker_is(tree, make_tree):
    assert ctl(tree, "stop", "beta").returncode == 0
    tree.wait_log(r"beta: pid \d+ ended: SIGTERM \(manual: stop requested\); stopped")
    result = ctl(tree, "status")
    assert result.returncode == 0 and "stopped on request" in result.stdout
    assert ctl(tree, "start", "beta").returncode == 0
    tree.wait_log(r"beta: started pid \d+", count=2)


def test_status_exits_3_when_a_worker_that_should_run_does_not(make_tree):
    tree = make_tree({"crashy": {"kind": "faulty", "interval": 1.0, "mode": "crash_at_start"}},
                     backoff_initial=5.0, backoff_max=5.0).start()
    tree.wait_log(r"crashy: pid \d+ ended: exit 1 \(crash\)")
    result = ctl(tree, "status")
    assert result.returncode == 3
    assert "BACKOFF" in result.stdout and "respawn in" in result.stdout
    assert ctl(tree, "health").returncode == 3


def test_restart_gives_a_new_pid_and_counts_a_manual_restart(tree):
    old = client(tree).call("pid", names=["alpha"])["pids"]["alpha"]
    assert ctl(tree, "restart", "alpha").returncode == 0
    tree.wait_log(r"alpha: started pid \d+", count=2)
    row = poll(lambda: [r for r in client(tree).call("status", names=["alpha"])["workers"] if r["state"] == "RUNNING"],
               5, what="alpha running again")[0]
    assert row["pid"] != old and row["restarts_by_reason"] == {"manual": 1}


def test_unknown_name_exits_4_and_names_the_known_ones(tree):
    result = ctl(tree, "restart", "gamma")
    assert result.returncode == 4
    assert result.stderr == "mdwctl: no worker named 'gamma'; known: alpha, beta\n"  # said once
    assert ctl(tree, "tail", "gamma").returncode == 4


def test_unreachable_daemon_exits_4_naming_the_socket(tmp_path):
    result = subprocess.run([sys.executable, "-m", "supervisor.ctl", "--socket", str(tmp_path / "x.sock"), "status"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 4
    assert str(tmp_path / "x.sock") in result.stderr and "is mdwd running?" in result.stderr


def test_usage_errors_exit_2(tree):
    assert ctl(tree, "frobnicate").returncode == 2
    assert ctl(tree, "tail", "-n", "5000", "alpha").returncode == 2
    assert ctl(tree, "start").returncode == 2


def test_tail_shows_recent_lines_and_follows_new_ones(tree):
    result = ctl(tree, "tail", "-n", "5", "alpha")
    assert result.returncode == 0 and "started in mode healthy" in result.stdout
    stamped = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} ")  # when mdwd received the line
    assert result.stdout.splitlines() and all(stamped.match(line) for line in result.stdout.splitlines())
    sock = str(tree.dir / "state" / "mdwd.sock")
    follower = subprocess.Popen([sys.executable, "-m", "supervisor.ctl", "--socket", sock, "tail", "-f", "-n", "1",
                                 "alpha"], stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout.readline()  # the history line: from now on the follower is subscribed
        assert ctl(tree, "restart", "alpha").returncode == 0
        lines = iter(follower.stdout.readline, "")
        assert any("started in mode healthy" in line and stamped.match(line) for line in lines)
    finally:
        follower.kill()
        follower.wait()


def test_reload_with_a_broken_config_exits_2_and_keeps_the_tree(tree):
    tree.config_path.write_text("[supervisor]\nstop_timeout = -1\n")
    result = ctl(tree, "reload")
    assert result.returncode == 2
    assert "supervisor.stop_timeout = -1: allowed is a number > 0" in result.stderr
    assert ctl(tree, "status").returncode == 0


def test_shutdown_stops_the_tree(tree):
    assert ctl(tree, "shutdown").returncode == 0
    assert tree.proc.wait(10) == 0


def test_bad_clients_cost_the_loop_nothing(tree):
    path = str(tree.dir / "state" / "mdwd.sock")
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(path)  # connects and never says anything
    huge = socket.socket(socket.AF_UNIX)
    huge.connect(path)
    huge.settimeout(10)
    try:
        try:
            huge.sendall(b"x" * (10 * 2**20))  # a 10 MB line
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = huge.recv(4096)
        assert b"request longer than" in answer or answer == b""
        rude = socket.socket(socket.AF_UNIX)
        rude.connect(path)
        rude.sendall(b'{"cmd": "status"}\n')
        rude.close()  # gone before the answer
        assert client(tree).call("status")["ok"]
        assert tree.stop() == 0
        summary = tree.wait_log(r"alpha: 1 process started, 0 restarts; .*; longest heartbeat gap ([\d.]+)s")
        assert float(summary.group(1)) < 0.5
    finally:
        silent.close()
        huge.close()


def test_connection_from_another_uid_is_refused(tree):
    path = str(tree.dir / "state" / "mdwd.sock")
    assert os.stat(path).st_mode & 0o777 == 0o600
    os.chmod(path, 0o666)  # let the other uid reach the socket itself, to see SO_PEERCRED refuse it
    # The test's directories are 0700: reach the socket through an O_PATH descriptor opened before setuid.
    # mdwd answers a refused client at once and closes, maybe before the request is sent: the client
    # must still read why (ControlClient does).
    # Everything is imported before setuid: the interpreter's own files may be unreadable to that uid.
    code = (f"import ctypes, os; from supervisor.shared.control_client import ControlClient; "
            f"fd = os.open({path!r}, os.O_PATH); os.setgid(65534); os.setuid(65534); "
            "ctypes.CDLL(None).prctl(4, 1, 0, 0, 0); "
            "print(ControlClient(f'/proc/self/fd/{fd}', timeout=10).call('status'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert "uid 65534 may not control mdwd" in result.stdout, result.stderr


def test_client_reads_a_refusal_sent_before_its_request(tmp_path):
    """mdwd refuses some clients on accept and closes: even if that beats the request, the client says why."""
    path = str(tmp_path / "refusing.sock")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(1)
    closed = threading.Event()

    def refuse():
        conn, _ = listener.accept()
        conn.sendall(b'{"ok": false, "kind": "denied", "error": "uid 65534 may not control mdwd"}\n')
        conn.close()
        closed.set()

    server = threading.Thread(target=refuse, daemon=True)
    server.start()
    client = ControlClient(path, timeout=5)
    connect = client._connect

    def connect_then_wait_for_the_close():  # the request goes out only after mdwd has closed
        sock = connect()
        assert closed.wait(5)
        return sock

    client._connect = connect_then_wait_for_the_close
    try:
        assert client.call("status") == {"ok": False, "kind": "denied", "error": "uid 65534 may not control mdwd"}
    finally:
        server.join(5)
        listener.close()


def test_second_supervisor_on_the_same_state_dir_refuses_to_start(tree, make_tree):
    second = make_tree({"alpha": GOOD})
    second.config_path.write_text(tree.config_path.read_text())
    second.start()
    assert second.proc.wait(30) == 2
    assert f"another mdwd (pid {tree.pid}) is already running with state_dir {tree.state_dir}" in second.log()


def test_daemons_started_together_on_one_state_dir_leave_exactly_one_running(make_tree, tmp_path):
    """With a stale socket left behind, the socket probe alone let two start in about 1 run in 6."""
    state = tmp_path / "shared-state"
    state.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(state / "mdwd.sock"))  # a socket file nobody listens on: what a killed mdwd leaves
    stale.close()
    trees = []
    for i in range(6):
        trees.append(make_tree({"alpha": GOOD}, state_dir=str(state)))
        (trees[-1].dir / f"t{i}").mkdir()
        trees[-1].log_path = trees[-1].dir / f"t{i}" / "mdwd.log"
    for tree in trees:
        tree.start()
    losers = poll(lambda: [t for t in trees if t.proc.poll() is not None] if sum(
        t.proc.poll() is not None for t in trees) == 5 else None, 30, what="five of six to give up")
    assert all(t.proc.returncode == 2 and "is already running with state_dir" in t.log() for t in losers)
    (winner,) = [t for t in trees if t not in losers]
    assert ControlClient(state / "mdwd.sock").call("pid")["pid"] == winner.pid
    assert winner.stop() == 0


def test_a_command_mdwd_failed_to_carry_out_exits_1():
    from supervisor import ctl

    with pytest.raises(ctl.CtlError) as failed:
        ctl._checked({"ok": False, "kind": "internal", "error": "internal error; mdwd's log has the details"})
    assert failed.value.code == 1 and "mdwd's log has the details" in str(failed.value)
