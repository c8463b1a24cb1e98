"""accept() failing with EMFILE must not spin the supervisor loop (nor flood its log)."""
import socket
import time

import psutil

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}
WINDOW = 2.0  # seconds of CPU time measured while mdwd cannot accept
MAX_CPU_SHARE = 0.10  # a spinning loop takes a whole core (~100 %); an idle one about 1 %
ACCEPT_ERRORS = r"control socket: cannot accept"


def cpu_seconds(process):
    times = process.cpu_times()
    return times.user + times.system


def test_accept_failing_with_emfile_does_not_spin_the_loop(make_tree):
    tree = make_tree({"alpha": GOOD}).start()
    tree.wait_log(r"ready: 1/1 healthy")
    path = str(tree.dir / "state" / "mdwd.sock")
    supervisor = psutil.Process(tree.pid)
    limits = supervisor.rlimit(psutil.RLIMIT_NOFILE)
    waiting = []
    try:
        supervisor.rlimit(psutil.RLIMIT_NOFILE, (supervisor.num_fds() + 2, limits[1]))  # room for 2 more fds
        for _ in range(8):  # 2 are accepted; the others wait in the backlog, the listener stays readable
            sock = socket.socket(socket.AF_UNIX)
            sock.connect(path)
            waiting.append(sock)
        tree.wait_log(ACCEPT_ERRORS)
        lines_before = len(tree.log().splitlines())
        cpu_before, started = cpu_seconds(supervisor), time.monotonic()
        poll(lambda: time.monotonic() - started >= WINDOW, WINDOW + 5, what="the measuring window")
        share = (cpu_seconds(supervisor) - cpu_before) / (time.monotonic() - started)
        log_lines = len(tree.log().splitlines()) - lines_before
        assert share < MAX_CPU_SHARE, f"mdwd used {share:.0%} of a CPU while it could not accept"
        assert log_lines <= 3, f"{log_lines} log lines in {WINDOW:g}s:\n{tree.log()[-2000:]}"
        assert tree.proc.poll() is None
    finally:
        supervisor.rlimit(psutil.RLIMIT_NOFILE, limits)
        for sock in waiting:
            sock.close()
    assert ControlClient(path).call("status")["ok"]  # accepting again once fds are back
    tree.wait_log(r"control socket: accepting again after [\d.]+s; accept\(\) failed \d+ times")
