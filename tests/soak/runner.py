"""One soak from start to end: set up, warm up, drive faults, shut down, check, report.

Every phase polls with a deadline. Whatever happens (a violation, a harness
error, Ctrl-C, SIGTERM), the `finally` of `Soak.run` stops the soak's threads,
SIGKILLs every process carrying the tree's tag, reaps what was re-parented to
the soak and removes the soak's temporary directory (unless --keep).
"""
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import traceback
import urllib.request
import uuid

import psutil

from tests.soak.faults import Chaos
from tests.soak.ledger import Ledger
from tests.soak.monitor import Monitor, StatusPoller
from tests.soak.report import Report, describe_gap, gap_findings, print_summary
from tests.soak.settings import PROBE, WORKERS, WRITER, ConfigState, Timings
from tests.soak.traffic import Traffic
from tests.soak.tree import HarnessError, Tree, become_subreaper, poll

WARM_UP = 60.0  # seconds for every worker to run and every dataset to be written once
FD_TOLERANCE = 2  # own fds mdwd may hold more at the end (median of the last minute vs the first)
RSS_TOLERANCE_MB = 8.0
SECOND_TERM_AFTER = 0.6  # past mdwd's 0.5 s window in which a repeated signal counts as one
LEFTOVER_GRACE = 2.0  # after mdwd exits, its descendants die with it (parent-death signal) within this


class Soak:
    def __init__(self, minutes, seed, skip, selection="", keep=False, quiet=False, tag=None):
        self.minutes, self.seed, self.skip, self.selection = minutes, seed, skip, selection  # e.g. "SKIP=hang"
        self.keep, self.tag = keep, tag or uuid.uuid4().hex
        self.clock = time.monotonic
        self.timings = Timings()
        self.token = secrets.token_hex(16)
        self.ledger = Ledger()
        self.origin = self.clock()
        self.report = Report(self.clock, self.origin, quiet=quiet)
        self.dir = self.tree = self.state = self.port = None
        self.monitor = self.status = self.traffic = self.chaos = None
        self.symbols = []
        self.died_reported = False

    def replay_command(self):
        return f"make soak MINUTES={self.minutes:g} SEED={self.seed} {self.selection}".rstrip()

    # -- the whole run ------------------------------------------------------

    def run(self):
        """0 PASS, 1 FAIL (violations), 2 the soak itself failed."""
        become_subreaper()
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self.dir = tempfile.mkdtemp(prefix="mdw-soak-")
        figures, harness_error = {"drive": 0.0, "tree_up": 0.0}, None
        try:
            self.set_up()
            self.warm_up()
            figures.update(self.drive())
            figures.update(self.shut_down())
            figures["integrity"] = self.integrity()
        except HarnessError as e:
            harness_error = e
        except Exception:  # a bug of the soak: say so, after cleaning up, with the figures so far
            harness_error = HarnessError(traceback.format_exc())
        finally:
            self.clean_up()
            signal.signal(signal.SIGTERM, previous)
        harness_error = harness_error or self.thread_error()
        if self.monitor is not None and figures.get("observed"):
            gaps = self.judge_gaps(*figures["observed"])
        else:
            gaps = {}
        passed = print_summary(self, gaps, figures)
        if harness_error:
            self.report.say(f"soak: HARNESS ERROR (not a finding about the service): {harness_error}")
            return 2
        return 0 if passed else 1

    def set_up(self):
        self.port = free_port()
        self.tree = Tree(self.dir, self.tag)
        self.state = ConfigState(self.timings, str(self.tree.state_dir), self.port, self.token)
        self.tree.write_config(self.state.render())
        check = subprocess.run([str(self.tree.mdwd), "--check-config", str(self.tree.config_path)],
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0:
            raise HarnessError(f"mdwd --check-config rejects the soak's config: {check.stderr.strip()}")
        say = self.report.say
        say(f"soak: seed {self.seed}, {self.minutes:g} min, skipping: {', '.join(sorted(self.skip)) or 'nothing'}; "
            f"dir {self.dir}")
        say(f"soak: config: embedded defaults + {self.timings.describe()}; API port {self.port}")
        say("soak: dataset limits: " + ", ".join(f"{d} {self.timings.limit(w):g}s" for d, w in WRITER.items())
            + f"; hung-symbol allowance {self.timings.hang_allowance:g}s")
        self.tree.start()
        self.monitor = Monitor(self.tree, lambda t, text: self.report.violation(t, "zombie", text))
        self.status = StatusPoller(self.tree)
        self.monitor.start()
        self.status.start()

    def warm_up(self):
        def up():
            if not self.tree.alive():
                raise HarnessError(f"mdwd exited {self.tree.exit_code()} during warm-up: "
                                   f"{self.tree.last_error() or self.tree.log_text()[-2000:]}")
            rows = self.tree.rows(self.tree.status())
            return all(rows.get(w, {}).get("state") == "RUNNING" for w in WORKERS) and self.monitor.has_written_all()
        if not poll(up, WARM_UP, 0.5):
            raise HarnessError(f"the tree did not come up within {WARM_UP:g}s (every worker RUNNING, every "
                               f"dataset written); mdwd's log ends: {self.tree.log_text()[-1500:]}")
        self.symbols = self.watchlist_symbols()
        self.report.fault(self.clock(), f"tree up: 6 workers running, 5 datasets written, "
                                        f"{len(self.symbols)} watchlist symbols")

    def watchlist_symbols(self):
        url = f"http://127.0.0.1:{self.port}/api/watchlist?order_by=symbol&limit=1000"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                symbols = [row["symbol"] for row in json.load(response)["data"]]
        except (OSError, ValueError, KeyError) as e:
            raise HarnessError(f"GET {url} failed after warm-up: {e}") from None
        if not symbols:
            raise HarnessError(f"GET {url} listed no symbols after warm-up")
        return sorted(set(symbols))  # the hung symbol is drawn from this list: the same seed, the same symbol

    def drive(self):
        start = self.clock()
        self.traffic = Traffic(self.port, self.token, random.Random(f"{self.seed}:traffic"), self.clock,
                               self.on_5xx, junk="junk" not in self.skip)
        self.traffic.start()
        duration = self.minutes * 60.0
        self.chaos = Chaos(self, self.skip, duration)
        self.chaos.run(until=start + duration, pause=time.sleep)
        end = self.clock()
        window = min(60.0, duration / 3)
        figures = {"drive": end - start, "observed": (start, end), "status": self.tree.status() or self.status.latest}
        first, last = self.monitor.resource_window(start, start + window), self.monitor.resource_window(end - window, end)
        if first and last and self.tree.alive():
            figures["resources"] = (first, last, (FD_TOLERANCE, RSS_TOLERANCE_MB))
            self.check_growth(first, last, end)
        return figures

    def check_growth(self, first, last, at):
        (fds0, rss0), (fds1, rss1) = first, last
        if fds1 - fds0 > FD_TOLERANCE:
            self.report.violation(at, "fd-growth", f"mdwd holds {fds1} fds of its own (beyond its children's pipes) "
                                                   f"in the last minute against {fds0} in the first (tolerance "
                                                   f"+{FD_TOLERANCE}): {fds1 - fds0} more")
        if rss1 - rss0 > RSS_TOLERANCE_MB:
            self.report.violation(at, "rss-growth", f"mdwd's RSS is {rss1:.1f} MiB in the last minute against "
                                                    f"{rss0:.1f} MiB in the first (tolerance +{RSS_TOLERANCE_MB:g} MiB)")

    # -- the end ------------------------------------------------------------

    def shut_down(self):
        """The final SIGTERM (twice, with the probe, unless term-twice is skipped) and what is left after it."""
        self.traffic.stop()
        self.status.stop()
        if not self.tree.alive():
            self.mdwd_died("before the final shutdown")
            self.monitor.stop()
            lines = ["shutdown: not run, mdwd had already exited"] + self.leftovers(self.clock())
            return {"shutdown": lines, "tree_up": self.clock() - self.origin}
        probe = self.add_probe() if "term-twice" not in self.skip else None
        term_at, second_at, probe_gone, exited_at = self.send_sigterm(probe)
        code, limit = self.tree.exit_code(), self.timings.stop_timeout + 3.0
        lines = [f"shutdown: SIGTERM at {self.report.rel(term_at)}"
                 + (f", a second one {second_at - term_at:.2f}s later" if second_at else "")
                 + (f"; mdwd exited {code} after {exited_at - term_at:.2f}s" if code is not None
                    else f"; mdwd still running after {exited_at - term_at:.1f}s")
                 + f" (must exit 0 within {limit:g}s)"]
        if code != 0:
            self.report.violation(exited_at, "shutdown", f"mdwd did not exit 0 within {limit:g}s of SIGTERM: "
                                                         f"exit code {code}")
            self.tree.kill_everything()
        if probe is not None:
            lines.append(self.judge_probe(term_at, second_at, probe_gone))
        self.monitor.stop()
        lines.extend(self.leftovers(exited_at))
        return {"shutdown": lines, "tree_up": self.clock() - self.origin}

    def send_sigterm(self, probe):
        """SIGTERM mdwd (again SECOND_TERM_AFTER later if there is a probe); wait for its exit.

        Returns the times of the SIGTERMs, of the probe's death and of mdwd's exit (or the deadline)."""
        term_at = self.clock()
        self.tree.signal(signal.SIGTERM)
        second_at = probe_gone = None
        deadline = term_at + self.timings.stop_timeout + 3.0
        while self.tree.alive() and self.clock() < deadline:
            if probe is not None and second_at is None and self.clock() >= term_at + SECOND_TERM_AFTER:
                second_at = self.clock()
                self.tree.signal(signal.SIGTERM)
            if probe is not None and probe_gone is None and not _running(probe):
                probe_gone = self.clock()
            time.sleep(0.01)
        exited_at = self.clock()
        if probe is not None and probe_gone is None and not _running(probe):
            probe_gone = exited_at
        return term_at, second_at, probe_gone, exited_at

    def add_probe(self):
        """Reload with a worker that ignores SIGTERM; its process (psutil), or None if it did not start."""
        self.state.probe = True
        self.tree.write_config(self.state.render())
        code, out, err = self.tree.ctl("reload")

        def running_probe():
            row = self.tree.rows(self.tree.status()).get(PROBE, {})
            return row if row.get("state") == "RUNNING" else None
        found = poll(running_probe, 15.0, 0.2)
        process = self.tree.ours(found["pid"]) if found else None
        if process is None:
            self.report.note(f"the shutdown probe did not start (mdwctl reload exited {code}: {err or out}); "
                             f"the second-SIGTERM check was not made")
        return process

    def judge_probe(self, term_at, second_at, gone):
        stop_timeout = self.timings.stop_timeout
        if gone is None:
            return "shutdown probe: still alive when mdwd exited"
        after = gone - term_at
        line = (f"shutdown probe (ignores SIGTERM): killed {after:.2f}s after the first SIGTERM "
                f"(mdwd owes it stop_timeout {stop_timeout:g}s)")
        if after < stop_timeout - 0.25:
            when = f"{gone - second_at:.2f}s after the second SIGTERM" if second_at and gone >= second_at else \
                "before the second SIGTERM"
            self.report.violation(gone, "second-sigterm",
                                  f"a second SIGTERM during shutdown escalated to SIGKILL: the probe worker that "
                                  f"ignores SIGTERM was killed {after:.2f}s after the first SIGTERM, {when}, not "
                                  f"after its stop_timeout {stop_timeout:g}s (README: only a second SIGINT kills)")
        return line

    def leftovers(self, exited_at):
        poll(lambda: not self.tree.tagged(), LEFTOVER_GRACE, 0.1)
        lines = []
        for process in self.tree.tagged():
            text = _describe(process)
            self.report.violation(exited_at, "leftover", f"{text} is still alive {LEFTOVER_GRACE:g}s after mdwd exited")
            lines.append(f"left after exit: {text} (alive)")
        orphans = []
        for child in _orphans(exclude={self.tree.pid}):
            orphans.append(f"pid {child.pid} {_name(child)} ({_role(child)}, {_status(child)})")
        if orphans:
            self.report.violation(exited_at, "leftover",
                                  f"{len(orphans)} process(es) of the tree outlived mdwd, unreaped: "
                                  f"{'; '.join(orphans)}. mdwd exited without waiting for them (they were "
                                  f"re-parented to the soak, a subreaper, to be seen; without one they go to PID 1)")
            lines.append("left after exit: " + "; ".join(orphans))
        return lines or ["left after exit: nothing"]

    def integrity(self):
        if not self.tree.db_path.exists():
            return "no database"
        conn = sqlite3.connect(str(self.tree.db_path), timeout=10.0)
        try:
            result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        finally:
            conn.close()
        if result != ["ok"]:
            self.report.violation(self.clock(), "integrity", f"PRAGMA integrity_check: {'; '.join(result)[:500]}")
        return "; ".join(result)[:200]

    def judge_gaps(self, start, end):
        gaps, found = gap_findings(self, start, end)
        for t, dataset, worker, stretch in found:
            self.report.violation(t, "dataset-gap", describe_gap(self, dataset, worker, stretch,
                                                                 self.timings.limit(worker)))
        return gaps

    # -- callbacks and clean-up ---------------------------------------------

    def on_5xx(self, t, what, status, detail):
        self.report.violation(t, "http-5xx", f"{what} answered {status} ({detail})")

    def mdwd_died(self, context, at=None, log_offset=0):
        if self.died_reported:
            return
        self.died_reported = True
        self.tree.proc.wait(5)
        error = self.tree.last_error(log_offset)
        self.report.violation(at or self.clock(), "mdwd-died",
                              f"mdwd exited with code {self.tree.exit_code()} {context}"
                              + (f"; its log: {error}" if error else ""))

    def thread_error(self):
        for thread in (self.monitor, self.status, self.traffic):
            if thread is not None and thread.error is not None:
                return HarnessError(f"the soak's {thread.name} thread failed: {thread.error!r}")
        return None

    def clean_up(self):
        for thread in (self.traffic, self.status, self.monitor):
            if thread is not None and thread.is_alive():
                thread.stop()
        if self.chaos is not None and self.chaos.db_lock is not None:
            self.chaos.db_lock.close()
        if self.tree is not None:
            self.tree.kill_everything()
        if self.keep:
            self.report.say(f"soak: kept {self.dir} (mdwd.log, mdwd.toml, state/)")
        elif self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def _running(process):
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _describe(process):
    try:
        return f"pid {process.pid} ({process.name()}, {process.status()})"
    except psutil.Error:
        return f"pid {process.pid}"


def _name(process):
    try:
        return process.name()
    except psutil.Error:
        return "?"


def _role(process):
    """A worker leads a process group of its own (README); its descendants are in its group."""
    try:
        return "a worker" if os.getpgid(process.pid) == process.pid else "a worker's descendant"
    except ProcessLookupError:
        return "gone"


def _status(process):
    try:
        return process.status()
    except psutil.Error:
        return "gone"


def _orphans(exclude):
    return [c for c in psutil.Process().children() if c.pid not in exclude]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # runs the finally blocks: the tree is killed, the directory removed
