"""`make run` and Ctrl-C: the SIGINT of a terminal reaches mdwd alone, which stops the tree cleanly,
and make exits 0 (not 130). Real processes on a real pseudo-terminal."""
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests import configs
from tests.proctree import SYSTEMD_VARS, tagged_pids

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)
GOOD = {"kind": "faulty", "interval": 0.2, "mode": "healthy", "beat_interval": 0.05}


class Terminal:
    """A command in a session of its own on a new pseudo-terminal, as if typed into a shell."""

    def __init__(self, argv, env, cwd):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                for number in (signal.SIGINT, signal.SIGQUIT):  # as a shell starts a command: pytest-xdist's
                    signal.signal(number, signal.SIG_DFL)        # workers ignore SIGINT, and exec keeps that
                os.chdir(cwd)
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.output = b""

    def read_until(self, text, timeout):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.output:
            left = deadline - time.monotonic()
            if left <= 0 or not self._read(left):
                raise AssertionError(f"no {text!r} on the terminal after {timeout}s:\n{self.text()[-3000:]}")

    def _read(self, timeout):
        if select.select([self.fd], [], [], timeout)[0]:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: every process of the session closed the terminal
                return False
            self.output += data
            return bool(data)
        return True

    def type(self, data):
        os.write(self.fd, data)

    def exit_code(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self._read(0):
                    pass
                return os.waitstatus_to_exitcode(status)
        raise AssertionError(f"still running after {timeout}s:\n{self.text()[-3000:]}")

    def text(self):
        return self.output.decode(errors="replace")


@pytest.fixture
def tag():
    """A tag in the environment of everything the test starts; whatever is left of it is killed."""
    tag = uuid.uuid4().hex
    yield tag
    for pid in tagged_pids(tag):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.skipif(shutil.which("make") is None or not (VENV / "bin" / "mdwd").exists(),
                    reason="needs make and mdwd installed in the running venv (make test)")
def test_ctrl_c_under_make_run_stops_the_tree_and_make_exits_0(tmp_path, tag):
    config = tmp_path / "run.toml"
    config.write_text(configs.to_toml(configs.tables({"alpha": GOOD}, state_dir=str(tmp_path / "state"))))
    env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
    env.update(configs.DRILLS_ENV, MDW_TEST_TAG=tag, TERM="dumb", XDG_STATE_HOME=str(tmp_path / "xdg"))
    # -o: the venv is the one running this test; make must not reinstall it. STATE_DIR: not the checkout's var
    terminal = Terminal(["make", "--no-print-directory", f"VENV={VENV}", "-o", f"{VENV}/.run-deps", "run",
                         f"CONFIG={config}", f"STATE_DIR={tmp_path / 'state'}"], env, ROOT)
    terminal.read_until("ready: 1/1 healthy", 60)
    terminal.type(b"\x03")  # Ctrl-C
    assert terminal.exit_code(30) == 0, terminal.text()[-3000:]
    text = terminal.text()
    assert "(shutdown: supervisor got SIGINT)" in text
    assert "all children stopped; exiting" in text and "Interrupt" not in text
    assert f"state in {tmp_path / 'state'};" in text and not (tmp_path / "xdg" / "market-data-worker" / "mdwd.sock").exists()


def test_without_a_terminal_the_command_just_runs_and_its_status_is_kept(tmp_path):
    run = [sys.executable, "-m", "supervisor.foreground"]
    assert subprocess.run([*run, "sh", "-c", "exit 3"], start_new_session=True, timeout=30).returncode == 3
    result = subprocess.run([*run, str(tmp_path / "nothing")], start_new_session=True, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 127 and "No such file or directory" in result.stderr
    assert subprocess.run(run, capture_output=True, timeout=30).returncode == 2


def test_on_a_terminal_the_command_gets_the_foreground_and_a_signal_death_is_128_plus_n(tmp_path, tag):
    env = {**os.environ, "MDW_TEST_TAG": tag}
    script = "import os, time; print('fg' if os.tcgetpgrp(0) == os.getpgrp() else 'bg', flush=True); time.sleep(60)"
    terminal = Terminal([sys.executable, "-m", "supervisor.foreground", sys.executable, "-c", script], env, ROOT)
    terminal.read_until("\n", 30)
    assert terminal.text().strip() == "fg"
    terminal.type(b"\x03")  # the command dies of the SIGINT; the launcher only passes its status on
    assert terminal.exit_code(30) == 128 + signal.SIGINT
