"""Real-process tests of the supervisor's own boundaries: its stderr, fork(), signals, its exit.

Each is named after the failure it guards against.
"""
import fcntl
import os
import signal
import subprocess
import sys
import termios

import psutil
import pytest

from supervisor.shared.control_client import ControlClient
from supervisor.host import PosixHost
from tests import configs
from tests.proctree import SYSTEMD_VARS, poll

GOOD = {"kind": "faulty", "interval": 0.5, "mode": "healthy", "beat_interval": 0.05}


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_failed_fork_leaks_no_fd():
    host = PosixHost()
    spec = configs.build({"a": GOOD}).workers["a"]

    def no_fork():
        raise BlockingIOError(11, "Resource temporarily unavailable")

    host._fork = no_fork
    before = open_fds()
    for _ in range(20):
        with pytest.raises(OSError):
            host.spawn(spec, None)
    assert open_fds() == before


def test_unread_stderr_never_blocks_the_loop(make_tree):
    """Nobody reads mdwd's stderr (a full pipe): the control socket still answers, and the loss is told."""
    flood = {"kind": "faulty", "interval": 0.5, "mode": "flood_stdout", "log_lines_per_second": 100000}
    tree = make_tree({"flood": flood, "good": GOOD})
    read_end, write_end = os.pipe()
    environ = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    environ.update(configs.DRILLS_ENV, MDW_TEST_TAG=tree.tag)
    tree.proc = subprocess.Popen([*configs.MDWD, "--config", str(tree.config_path)],
                                 stdin=subprocess.DEVNULL, stdout=write_end, stderr=write_end, cwd=tree.dir,
                                 env=environ, start_new_session=True)
    os.close(write_end)
    try:
        def queued():
            count = bytearray(4)
            fcntl.ioctl(read_end, termios.FIONREAD, count)
            return int.from_bytes(count, sys.byteorder) >= 60000  # the pipe (64 KiB) is full
        poll(queued, 20, what="mdwd's stderr pipe to fill up")
        client = ControlClient(tree.state_dir / "mdwd.sock", timeout=5.0)

        def good_state():
            return {r["name"]: r for r in client.call("status")["workers"]}["good"]["state"]
        poll(lambda: good_state() == "RUNNING", 20, what="the good worker to run while the pipe is full")
        for _ in range(5):
            assert good_state() == "RUNNING"
        os.set_blocking(read_end, False)
        seen = b""

        def told():
            nonlocal seen
            try:
                seen = (seen + os.read(read_end, 1 << 20))[-(1 << 21):]
            except BlockingIOError:
                pass
            return b"bytes of log output" in seen and b"were dropped while stderr was not being read" in seen
        poll(told, 20, what="the notice of dropped output once stderr is read again")
    finally:
        os.close(read_end)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2])
def test_sigusr_does_not_kill_mdwd(make_tree, signum):
    tree = make_tree({"good": GOOD}).start()
    tree.wait_log(r"good: started pid")
    tree.signal(signum)
    tree.wait_log(rf"mdwd: INFO {signum.name}: ")
    assert tree.proc.poll() is None
    assert ControlClient(tree.state_dir / "mdwd.sock").call("status")["ok"]
    assert tree.stop() == 0


def test_second_sigterm_waits_for_stop_timeout_instead_of_killing(make_tree):
    stubborn = {"kind": "faulty", "interval": 0.5, "mode": "ignore_term", "beat_interval": 0.05}
    tree = make_tree({"stubborn": stubborn}, stop_timeout=3.0, heartbeat_timeout=60.0, stale_cycles=0).start()
    tree.wait_log(r"stubborn: started pid")
    poll(lambda: "RUNNING" in str(ControlClient(tree.state_dir / "mdwd.sock").call("status")), 10)
    tree.signal(signal.SIGTERM)
    tree.wait_log(r"SIGTERM: stopping 1 workers")
    tree.signal(signal.SIGTERM)
    tree.wait_log(r"SIGTERM while stopping: already stopping")
    match = tree.wait_log(r"stubborn: pid \d+ still alive ([\d.]+)s after SIGTERM; sending SIGKILL", timeout=10)
    assert float(match.group(1)) == 3.0
    assert tree.proc.wait(10) == 0


def test_mdwd_reaps_every_adopted_process_before_it_exits(make_tree):
    """The API worker's granian processes are adopted by mdwd when their parent dies; none may be
    left (even as a zombie) once mdwd has exited."""
    tree = make_tree({"api": {"kind": "api", "interval": 1.0}}, sections={"api": {"port": 0}}).start()
    tree.api_port()
    api = psutil.Process(int(tree.wait_log(r"api: started pid (\d+)").group(1)))
    members = poll(lambda: len(api.children(recursive=True)) >= 3 and api.children(recursive=True), 10,
                   what="granian's manager and its two serving processes")
    assert tree.stop() == 0
    left = [p.pid for p in members if psutil.pid_exists(p.pid)]
    assert left == [], f"left behind: {left}"


def test_a_child_sees_no_secret_its_kind_does_not_ask_for(make_tree):
    tree = make_tree({"good": GOOD}).start(SCHWAB_APP_SECRET="s3cret", SCHWAB_APP_KEY="k", MDW_API_TOKEN="t0ken")
    tree.wait_log(r"good: INFO faulty: started in mode healthy; .*; secret variables visible: none")
    assert tree.stop() == 0


def test_interrupted_writes_leave_no_temp_file_behind(make_tree):
    tree = make_tree({"good": GOOD})
    tree.state_dir.mkdir()
    for name in (".schwab-token-abc123", ".quarantine-xyz"):
        (tree.state_dir / name).write_text("{}")
    tree.start()
    tree.wait_log(r"removed \.schwab-token-abc123, left by an interrupted write")
    assert not list(tree.state_dir.glob(".schwab-token-*")) and not list(tree.state_dir.glob(".quarantine-*"))
    tree.wait_log(r"ready: 1/1 healthy")  # the temp files go before mdwd handles SIGTERM: stop it after
    assert tree.stop() == 0


def test_a_secret_file_others_can_read_is_warned_about(make_tree):
    tree = make_tree({"good": GOOD}, sections={"api": {"token": "not-for-everyone"}})
    tree.config_path.chmod(0o644)
    tree.start()
    tree.wait_log(rf"WARNING the config file, which sets \[api\] token {tree.config_path} is readable by group and "
                  rf"others \(mode 0644\); make it 0600")
    tree.wait_log(r"ready: 1/1 healthy")  # warned before mdwd handles SIGTERM: stop it after
    assert tree.stop() == 0
