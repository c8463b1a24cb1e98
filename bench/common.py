"""Helpers shared by the benchmarks: percentiles, and running a supervisor tree (in-process or not)."""
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

import psutil

from supervisor.host import PosixHost
from supervisor.logs import LineFormatter, setup_logging
from supervisor.loop import Supervisor
from supervisor.notify import SystemdNotifier
from tests import configs


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def describe(values, unit="s", scale=1.0):
    return (f"n={len(values)} p50={percentile(values, 50) * scale:.3f}{unit} "
            f"p99={percentile(values, 99) * scale:.3f}{unit} max={max(values) * scale:.3f}{unit} "
            f"mean={statistics.fmean(values) * scale:.3f}{unit}")


@contextlib.contextmanager
def work_dir(name):
    """A scratch directory for one benchmark, removed afterwards."""
    path = tempfile.mkdtemp(prefix=f"mdw-bench-{name}-")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_tree(directory, workers, name="mdwd", sections=None, **supervisor):
    """mdwd as a subprocess in its own session, running `workers` (default supervisor settings), or,
    with workers=None, every embedded default worker; `sections` adds [provider], [api]... tables."""
    supervisor.setdefault("state_dir", os.path.join(directory, "state"))
    path = os.path.join(directory, f"{name}.toml")
    tables = {"supervisor": supervisor} if workers is None else configs.tables(workers, fast=False, **supervisor)
    tables.update(sections or {})
    with open(path, "w") as f:
        f.write(configs.to_toml(tables))
    log = open(os.path.join(directory, f"{name}.log"), "wb")
    return subprocess.Popen([*configs.MDWD, "--config", path], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=log, start_new_session=True, env=configs.mdwd_environ())


def kill_tree(proc):
    """SIGKILL a process, its descendants and its process group, and reap it."""
    for child in psutil.Process(proc.pid).children(recursive=True):
        child.kill()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def in_process_supervisor(host, workers, quiet=True, **supervisor):
    """A real Supervisor over `host`, run by the caller with run_once()."""
    config = configs.from_tables(configs.tables(workers, fast=False, **supervisor))
    setup_logging(False, (lambda data: None) if quiet else (lambda data: sys.stderr.buffer.write(data)))
    return Supervisor(config, host, SystemdNotifier(host.now(), environ={}), LineFormatter(False),
                      load_config=configs.load)


class RecordingHost(PosixHost):
    """The real host, noting when the loop signalled and reaped which pid."""

    def __init__(self, quiet=True):
        super().__init__()
        self.quiet = quiet
        self.signalled = []  # (time, pgid, signum)
        self.reaped = []  # (time, pid)

    def signal_group(self, pgid, signum):
        self.signalled.append((self.now(), pgid, signum))
        return super().signal_group(pgid, signum)

    def reap(self):
        ended = super().reap()
        now = self.now()
        self.reaped.extend((now, pid) for pid, _ in ended)
        return ended

    def write_log(self, data):
        if not self.quiet:
            super().write_log(data)


def best_of(repeats: int, fn) -> tuple[float, object]:
    """Smallest wall time of `repeats` calls (time.perf_counter) and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def last_beats(path):
    """pid -> the time of its last beat, from a faulty worker's beat log (`pid time` lines), in the order
    the pids first beat; {} while the log does not exist."""
    last = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                pid, when = line.split()
                last[int(pid)] = float(when)
    return last
