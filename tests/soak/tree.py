"""One real mdwd tree, driven only through its public surfaces.

`mdwd --config PATH` and `mdwctl --socket PATH` (both from the venv the soak
runs in), signals, the config file, `mdwctl status --json`, /proc via psutil.
Every process of the tree carries MDW_SOAK_TAG=<unique> in its environment
(children inherit it), as tests/proctree.py does, so the soak can tell its
tree from any other on the machine, refuse to signal a reused pid, and kill
everything at the end. The soak process itself is made a child subreaper, so
whatever of the tree outlives mdwd is re-parented to it and can be seen.
"""
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

TAG_VAR = "MDW_SOAK_TAG"
SYSTEMD_VARS = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "STATE_DIRECTORY",
                "RUNTIME_DIRECTORY", "LISTEN_FDS", "LISTEN_PID", "MDW_API_TOKEN")
PR_SET_CHILD_SUBREAPER = 36


class HarnessError(Exception):
    """The soak itself could not do what it needed (not a finding about the service)."""


def become_subreaper():
    """Orphans of the tree come to this process once mdwd is gone (instead of to PID 1)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise HarnessError(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def has_tag(process, tag):
    """Whether a live process carries our tag (False for a zombie or a process we cannot read)."""
    try:
        with open(f"/proc/{process.pid}/environ", "rb") as f:
            return f"{TAG_VAR}={tag}".encode() in f.read().split(b"\0")
    except OSError:
        return False


class Tree:
    def __init__(self, directory, tag):
        self.dir = Path(directory)
        self.tag = tag
        self.state_dir = self.dir / "state"
        self.config_path = self.dir / "mdwd.toml"
        self.log_path = self.dir / "mdwd.log"
        self.socket_path = self.state_dir / "mdwd.sock"
        self.db_path = self.state_dir / "market_data.db"
        bin_dir = Path(sys.executable).parent
        self.mdwd, self.mdwctl = bin_dir / "mdwd", bin_dir / "mdwctl"
        for program in (self.mdwd, self.mdwctl):
            if not program.exists():
                raise HarnessError(f"{program} not found: run the soak with the venv's python (make soak)")
        self.proc = None
        self.process = None  # psutil.Process of mdwd

    # -- mdwd ------------------------------------------------------------

    def write_config(self, data):
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, self.config_path)  # mdwd never reads half a file

    def start(self):
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
        # MDW_DRILLS=1: the drill kinds are registered, for the shutdown probe (a `faulty` worker).
        env.update({TAG_VAR: self.tag, "PYTHONUNBUFFERED": "1", "MDW_DRILLS": "1"})
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([str(self.mdwd), "--config", str(self.config_path)], cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.process = psutil.Process(self.proc.pid)

    @property
    def pid(self):
        return self.proc.pid

    def exit_code(self):
        """mdwd's exit code, or None while it runs."""
        return self.proc.poll() if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signum):
        if self.alive():
            os.kill(self.proc.pid, signum)

    def log_size(self):
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_text(self, since=0):
        with open(self.log_path, "rb") as f:
            f.seek(since)
            return f.read().decode(errors="replace")

    def last_error(self, since=0):
        """The last exception line ('XError: ...') or CRITICAL line of mdwd's output since an offset."""
        found = None
        for line in self.log_text(since).splitlines():
            head = line.split(":", 1)[0]
            if "CRITICAL" in line or (head.endswith(("Error", "Exception")) and " " not in head):
                found = line.strip()
        return found

    # -- mdwctl ----------------------------------------------------------

    def ctl(self, *args, timeout=15.0):
        """(exit code, stdout, stderr) of `mdwctl --socket ... ARGS`."""
        try:
            done = subprocess.run([str(self.mdwctl), "--socket", str(self.socket_path), *args], capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return None, "", f"mdwctl {' '.join(args)} did not finish within {timeout:g}s"
        return done.returncode, done.stdout, done.stderr.strip()

    def status(self):
        """The answer of `mdwctl status --json`, or None if mdwd did not answer."""
        code, out, _ = self.ctl("status", "--json", timeout=10.0)
        if code not in (0, 3):
            return None
        try:
            return json.loads(out)
        except ValueError:
            return None

    @staticmethod
    def rows(status):
        return {row["name"]: row for row in (status or {}).get("workers", [])}

    # -- processes -------------------------------------------------------

    def ours(self, pid):
        """psutil.Process for `pid` if it is a live process of this tree, else None."""
        try:
            process = psutil.Process(pid)
        except (psutil.Error, TypeError, ValueError):
            return None
        return process if has_tag(process, self.tag) else None

    def descendants(self):
        try:
            return self.process.children(recursive=True) if self.alive() else []
        except psutil.Error:
            return []

    def serving_processes(self, api_pid):
        """granian's serving processes: the children of the api worker's child (the manager)."""
        api = self.ours(api_pid)
        try:
            managers = api.children() if api else []
            return [p for m in managers for p in m.children() if has_tag(p, self.tag)]
        except psutil.Error:
            return []

    def tagged(self):
        """Every live (non-zombie) process carrying our tag."""
        found = []
        for process in psutil.process_iter():
            if process.pid != os.getpid() and has_tag(process, self.tag):
                found.append(process)
        return found

    def kill_everything(self):
        """SIGKILL every tagged process and mdwd's session; reap mdwd and any orphan re-parented to us."""
        for process in self.tagged():
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                pass
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        reap_orphans(exclude={self.proc.pid} if self.proc else set())


def reap_orphans(exclude=()):
    """Reap every ended child of this process except `exclude` (Popen waits for those): orphans of the tree.

    Call it only when no subprocess of the soak's own is running (mdwctl), or it may reap one of those."""
    reaped = []
    for child in psutil.Process().children():
        if child.pid in exclude:
            continue
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(child.pid, os.WNOHANG)
                reaped.append(child.pid)
        except (psutil.Error, ChildProcessError):
            continue
    return reaped


def poll(condition, timeout, interval=0.05):
    """Call `condition` until it returns something truthy or `timeout` seconds pass; its last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)
