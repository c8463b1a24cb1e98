"""What a forked child looks like from outside: its own group, name, fds and environment."""
import os
import socket

import psutil

from tests.proctree import poll

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}


def test_child_has_own_group_name_only_its_pipes_and_no_systemd_environment(make_tree, tmp_path):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    try:
        tree = make_tree({"watchlist_scanner": GOOD}).start(
            NOTIFY_SOCKET=str(tmp_path / "notify.sock"), WATCHDOG_USEC="10000000")
        pid = int(tree.wait_log(r"watchlist_scanner: started pid (\d+)").group(1))
        tree.wait_log(r"ready: 1/1 healthy")
        assert os.getpgid(pid) == pid
        assert open(f"/proc/{pid}/comm").read().strip() == "mdw:watchlist_s"  # 15 bytes, as the kernel keeps
        fds = sorted(int(fd) for fd in os.listdir(f"/proc/{pid}/fd"))
        assert fds == [0, 1, 2, 3], f"the child inherited more than its pipes: {fds}"
        assert os.readlink(f"/proc/{pid}/fd/0") == "/dev/null"
        # /proc/PID/environ shows the environment at exec time; the child reports its own.
        tree.wait_log(r"watchlist_scanner: INFO faulty: started in mode healthy; systemd variables inherited: none")
        assert psutil.Process(pid).ppid() == tree.pid
        assert tree.stop() == 0
    finally:
        notify.close()


def test_supervisor_started_without_notify_socket_still_runs(make_tree):
    tree = make_tree({"a": GOOD}).start()
    poll(lambda: "ready: 1/1 healthy" in tree.log(), 10, what="ready")
    assert tree.stop() == 0
