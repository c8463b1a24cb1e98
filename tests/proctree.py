"""Run a real supervisor tree in a test, and make sure nothing of it survives the test.

Every process of a tree carries MDW_TEST_TAG=<unique> in its environment
(children inherit it), so the finalizer finds and SIGKILLs all of them, even
grandchildren that escaped their process group. Waiting is always polling with
a deadline, never a bare sleep.
"""
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from tests import configs

SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "STATE_DIRECTORY",
                "RUNTIME_DIRECTORY")


def poll(condition, timeout, interval=0.02, what="condition"):
    """Call `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def tagged_pids(tag):
    """Every live process whose environment carries MDW_TEST_TAG=tag."""
    needle = f"MDW_TEST_TAG={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    if psutil.Process(int(entry)).status() != psutil.STATUS_ZOMBIE:
                        found.append(int(entry))
        except (OSError, psutil.Error):
            continue
    return found


class Tree:
    def __init__(self, tmp_path, workers, sections=None, **supervisor):
        self.dir = Path(tmp_path)
        self.tag = uuid.uuid4().hex
        self.config_path = self.dir / "mdwd.toml"
        self.log_path = self.dir / "mdwd.log"
        self.state_dir = self.dir / "state"
        self.proc = None
        self.write_config(workers, sections, **supervisor)

    def write_config(self, workers, sections=None, **supervisor):
        """Only `workers` run; or, with workers=None, every embedded default worker does."""
        supervisor.setdefault("state_dir", str(self.state_dir))
        if workers is None:
            tables = {"supervisor": supervisor}
        else:
            tables = configs.tables(workers, **supervisor)
        for section, table in (sections or {}).items():
            tables[section] = {**tables.get(section, {}), **table}
        self.config_path.write_text(configs.to_toml(tables))

    def api_port(self, timeout=20.0):
        """The port the api worker serves on (from its log line)."""
        return int(self.wait_log(r"serving the API on [\d.]+:(\d+)", timeout).group(1))

    def start(self, *args, **env):
        """Start mdwd on this tree's config, with `args` (e.g. --state-dir) and `env` on top of ours."""
        environ = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
        environ.update(configs.DRILLS_ENV, MDW_TEST_TAG=self.tag, PYTHONUNBUFFERED="1")
        environ.update(env)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*configs.MDWD, "--config", str(self.config_path), *args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.dir, env=environ,
                start_new_session=True,
            )
        return self

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern, timeout=10.0, count=1):
        """The `count`-th match of regex `pattern` in the supervisor's output."""
        def found():
            matches = list(re.finditer(pattern, self.log()))
            return matches[count - 1] if len(matches) >= count else None
        return poll(found, timeout, what=lambda: f"{pattern!r} x{count} in the log:\n{self.log()[-3000:]}")

    def beat_pids(self, beat_log):
        path = self.dir / beat_log
        if not path.exists():
            return []
        return list(dict.fromkeys(int(line.split()[0]) for line in path.read_text().splitlines() if line.strip()))

    def max_beat_gap(self, beat_log, pid=None):
        times = [float(t) for p, t in (line.split() for line in (self.dir / beat_log).read_text().splitlines())
                 if pid is None or int(p) == pid]
        return max(b - a for a, b in zip(times, times[1:]))

    def zombies(self):
        try:
            return [c.pid for c in psutil.Process(self.pid).children() if c.status() == psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return []

    def signal(self, signum):
        os.kill(self.pid, signum)

    def stop(self, timeout=10.0):
        """SIGTERM the supervisor and return its exit code."""
        self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def survivors(self):
        return tagged_pids(self.tag)

    def kill_everything(self):
        for pid in self.survivors():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(5)


def assert_tsla_healed(tree, provider, timeout=10.0):
    """A watchlist of AAPL, MSFT, TSLA and NVDA fetched one by one whose TSLA never returns: its process
    is killed for the hang, TSLA handed over and quarantined, the three others stored, and the stop clean.
    `provider` names the provider whose calls the worker counts."""
    from supervisor.shared.control_client import ControlClient
    from workers.store import StoreReader

    tree.wait_log(r"watchlist: stopping pid \d+ \(hang: no heartbeat for [\d.]+s; last beat 'fetch TSLA'\)",
                  timeout=timeout)
    tree.wait_log(r"watchlist: handing 'fetch TSLA' to the new incarnation")
    tree.wait_log(r"watchlist: WARNING quarantine: quarantining TSLA for 900s: the previous process hung on it")
    tree.wait_log(r"watchlist: INFO scanner: watchlist cycle: symbols 4, fresh 3, stored 3")
    rows = StoreReader(tree.state_dir).watchlist(order_by="symbol")
    assert sorted(r["symbol"] for r in rows) == ["AAPL", "MSFT", "NVDA"]
    status = ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"][0]
    assert [q["item"] for q in status["reported"]["quarantined"]] == ["TSLA"]
    assert status["provider_requests"][provider]["ok"] >= 3
    poll(lambda: (tree.state_dir / "quarantine-watchlist.json").exists(), 2, what="the quarantine file")
    assert tree.stop() == 0
