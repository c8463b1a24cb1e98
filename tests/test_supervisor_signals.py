"""Signals to a real supervisor (TERM, HUP) and its conversation with a fake systemd."""
import signal
import socket
import time

import psutil
import pytest

from tests.proctree import poll

GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}


def test_sigterm_stops_every_child_and_exits_0_within_the_stop_timeout(make_tree):
    tree = make_tree({"a": GOOD, "b": GOOD, "c": {**GOOD, "mode": "ignore_term", "after": 5.0}},
                     stop_timeout=1.0).start()
    tree.wait_log(r"ready: 3/3 healthy")
    children = [c.pid for c in psutil.Process(tree.pid).children()]
    started = time.monotonic()
    assert tree.stop(timeout=5) == 0
    assert time.monotonic() - started < 1.0 + 0.8  # children stop in parallel, not one after another
    assert not [p for p in children if psutil.pid_exists(p)]
    assert not tree.survivors()


def test_sighup_restarts_changed_starts_added_stops_removed(make_tree):
    tree = make_tree({"keep": GOOD, "change": GOOD, "drop": GOOD}).start()
    tree.wait_log(r"ready: 3/3 healthy")
    pids = {name: int(tree.wait_log(rf"{name}: started pid (\d+)").group(1)) for name in ("keep", "change", "drop")}
    tree.write_config({"keep": GOOD, "change": {**GOOD, "beat_interval": 0.06}, "add": GOOD})
    tree.signal(signal.SIGHUP)
    tree.wait_log(r"reload: config .* applied")
    new_change = int(tree.wait_log(r"change: started pid (\d+)", count=2).group(1))
    tree.wait_log(r"add: started pid (\d+)")
    tree.wait_log(rf"drop: pid {pids['drop']} ended: SIGTERM \(config: removed from config\)")
    tree.wait_log(rf"change: pid {pids['change']} ended: SIGTERM \(config: settings changed on reload\)")
    assert new_change != pids["change"]
    assert psutil.pid_exists(pids["keep"]), "an unchanged worker was restarted"
    assert "keep: stopping" not in tree.log()
    poll(lambda: not psutil.pid_exists(pids["drop"]), 2, what="the removed worker to be gone")
    assert tree.stop() == 0


def test_sighup_with_a_broken_config_keeps_the_running_tree(make_tree):
    tree = make_tree({"a": GOOD}).start()
    pid = int(tree.wait_log(r"a: started pid (\d+)").group(1))
    tree.config_path.write_text("[supervisor]\nheartbeat_timeout = -3\nbogus = 1\n[workers.a]\nkind = 'faulty'\n")
    tree.signal(signal.SIGHUP)
    tree.wait_log(r"reload: config rejected; the running tree is kept unchanged")
    log = tree.log()
    assert "supervisor.heartbeat_timeout = -3: allowed is a number > 0" in log
    assert "supervisor.bogus = 1: unknown key" in log
    assert "workers.a.interval is missing" in log
    assert psutil.pid_exists(pid) and "a: stopping" not in log
    assert tree.stop() == 0


class FakeSystemd:
    """The receiving end of sd_notify: a unix datagram socket in the test's directory."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = str(path)
        self.messages = []  # (monotonic time, line)

    def receive(self, timeout):
        """Collect messages for up to `timeout` seconds; return the new ones."""
        new = []
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            now = time.monotonic()
            new.extend((now, line) for line in data.decode().splitlines())
        self.messages.extend(new)
        return new

    def wait_for(self, text, timeout):
        poll(lambda: any(line.startswith(text) for _, line in self.messages + self.receive(0.05)), timeout,
             what=lambda: f"{text!r} from the supervisor; got {[m for _, m in self.messages][-10:]}")

    def close(self):
        self.sock.close()


@pytest.fixture
def systemd(tmp_path):
    fake = FakeSystemd(tmp_path / "notify.sock")
    yield fake
    fake.close()


def test_fake_systemd_sees_ready_status_watchdog_cadence_and_stopping(make_tree, systemd):
    tree = make_tree({"a": GOOD, "b": GOOD}).start(NOTIFY_SOCKET=systemd.path, WATCHDOG_USEC="200000")
    systemd.wait_for("READY=1", 10)
    assert ("STATUS=2/2 healthy" in [m for _, m in systemd.messages])
    pings = [t for t, m in systemd.receive(1.5) if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 10 and max(gaps) < 0.1 + 0.1, f"watchdog gaps {gaps}"
    tree.signal(signal.SIGSTOP)  # a blocked loop must stop feeding the watchdog
    try:
        systemd.receive(0.05)  # what was already in flight
        assert not [m for _, m in systemd.receive(0.6) if m == "WATCHDOG=1"]
    finally:
        tree.signal(signal.SIGCONT)
    systemd.wait_for("WATCHDOG=1", 2)
    assert tree.stop() == 0
    systemd.wait_for("STOPPING=1", 2)


def test_watchdog_pings_only_when_watchdog_pid_is_ours(make_tree, systemd):
    tree = make_tree({"a": GOOD}).start(NOTIFY_SOCKET=systemd.path, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    systemd.wait_for("READY=1", 10)
    assert not [m for _, m in systemd.receive(0.5) if m == "WATCHDOG=1"]
    assert tree.stop() == 0


def test_escalation_stops_the_watchdog_so_systemd_restarts_the_service(make_tree, systemd):
    tree = make_tree({"a": GOOD, "crashy": {"kind": "faulty", "interval": 1.0, "mode": "crash_at_start"}},
                     escalate_after=3, escalate_window=60.0, backoff_initial=0.05, backoff_max=0.1,
                     ).start(NOTIFY_SOCKET=systemd.path, WATCHDOG_USEC="200000")
    systemd.wait_for("WATCHDOG=trigger", 10)
    systemd.receive(0.05)
    assert not [m for _, m in systemd.receive(0.6) if m == "WATCHDOG=1"]
    assert any(m.startswith("STATUS=escalating: ") for _, m in systemd.messages)
    tree.wait_log(r"no longer feeding the systemd watchdog")
    assert tree.stop() == 0
