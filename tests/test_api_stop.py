"""How the API's HTTP server ends is logged in one line; only a real failure gets a traceback.

The failure guarded: every designed exit of granian's manager (it raises
SystemExit(1) when a serving process ended) was logged as an ERROR with a
SystemExit traceback, and a stop on SIGTERM logged nothing of ours at all:
the supervisor's SIGKILL of the group came first.
"""
from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys

import psutil
import pytest

from api.server import EXIT_SERVER_FAILED, report_exit
from tests.api_support import ROOT
from api.worker import EXIT_SERVER_DIED
from tests.api_support import child, http_tree  # noqa: F401 (child: a fixture)
from tests.fake_control import FakeControl, worker_row
from tests.proctree import poll


def server_lines(caplog):
    return [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records if r.name == "api.server"]


# -- in process ----------------------------------------------------------------

def test_a_stop_on_request_is_one_info_line(caplog):
    caplog.set_level(logging.INFO)
    assert report_exit(lambda: None, lambda: "on SIGTERM or SIGINT") == 0
    assert server_lines(caplog) == [
        (logging.INFO, "the HTTP server (granian) stopped on SIGTERM or SIGINT (exit code 0)", False)]


@pytest.mark.parametrize("code, expected, level", [
    (1, 1, logging.WARNING), (None, 0, logging.INFO), (3, 3, logging.WARNING),
    ("text", EXIT_SERVER_FAILED, logging.WARNING)])
def test_granians_own_exit_is_one_line_with_its_code_not_a_systemexit_traceback(caplog, code, expected, level):
    caplog.set_level(logging.INFO)

    def serve():
        raise SystemExit(code)

    assert report_exit(serve, lambda: "because its serving process worker-2 ended") == expected
    assert server_lines(caplog) == [
        (level, f"the HTTP server (granian) exited with code {expected} because its serving process worker-2 ended",
         False)]


def test_an_unexpected_exception_is_logged_with_its_traceback(caplog):
    def serve():
        raise RuntimeError("granian could not start")

    assert report_exit(serve) == EXIT_SERVER_FAILED
    [record] = [r for r in caplog.records if r.name == "api.server"]
    assert record.levelno == logging.ERROR and record.exc_info[0] is RuntimeError


def test_a_failing_reason_does_not_turn_a_clean_stop_into_a_failure(caplog):
    caplog.set_level(logging.INFO)

    def why():
        raise AttributeError("granian renamed an attribute")

    assert report_exit(lambda: None, why) == 0
    assert server_lines(caplog) == [(logging.INFO, "the HTTP server (granian) stopped (exit code 0)", False)]


# Set from a signal handler while the waiting thread holds the event's lock, as
# when a second stop signal lands on granian's manager just as it wakes.
HANDLER_WHILE_HELD = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from api.listener import SignalSafeEvent
event = SignalSafeEvent()
signal.signal(signal.SIGUSR1, lambda *args: event.set())
with event._cond:
    os.kill(os.getpid(), signal.SIGUSR1)
    for _ in range(3):  # bytecodes, between which the handler runs
        pass
print(event.is_set())
"""


def test_a_stop_signal_while_granians_manager_wakes_does_not_deadlock_it():
    result = subprocess.run([sys.executable, "-c", HANDLER_WHILE_HELD, ROOT], capture_output=True, text=True,
                            timeout=10)
    assert (result.returncode, result.stdout) == (0, "True\n"), result.stderr


# -- real processes ------------------------------------------------------------

def server_log(stderr):
    """The lines of the HTTP server's own logger (api.server), granian's and the worker's left out."""
    return [line for line in stderr.splitlines() if re.match(r"[A-Z]+ api\.server: ", line)]


def test_sigterm_to_the_group_ends_the_api_in_one_line_and_by_sigterm(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2)
        c.wait_port()
        manager, serving = http_tree(c, 2)
        poll(lambda: c.beats(), 15, what="a beat")
        os.killpg(c.proc.pid, signal.SIGTERM)  # as the supervisor stops a worker
        assert c.proc.wait(15) == -signal.SIGTERM  # the supervisor still sees it end by its signal
        stderr = c.stderr()
        assert "Traceback" not in stderr and "SystemExit" not in stderr
        assert server_log(stderr) == ["INFO api.server: the HTTP server (granian) stopped on SIGTERM or SIGINT "
                                      "(exit code 0)"], stderr
        poll(lambda: not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in [manager, *serving]), 5,
             what="the serving processes to have ended before the worker")


def test_sigterm_to_the_api_worker_alone_is_passed_on_to_its_server(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2)
        c.wait_port()
        http_tree(c, 2)
        poll(lambda: c.beats(), 15, what="a beat")
        os.kill(c.proc.pid, signal.SIGTERM)  # `kill PID`: the server is not signalled
        assert c.proc.wait(15) == -signal.SIGTERM
        assert server_log(c.stderr()) == ["INFO api.server: the HTTP server (granian) stopped on SIGTERM or SIGINT "
                                          "(exit code 0)"], c.stderr()


def test_a_serving_process_that_died_is_one_warning_line_not_a_systemexit_traceback(child, tmp_path):
    with FakeControl(tmp_path / "state" / "mdwd.sock", rows=[worker_row("api", interval=1.0)]):
        c = child(processes=2)
        c.wait_port()
        manager, serving = http_tree(c, 2)
        serving[0].kill()
        assert c.proc.wait(15) == EXIT_SERVER_DIED
        stderr = c.stderr()
        assert "Traceback" not in stderr and "SystemExit" not in stderr
        [line] = server_log(stderr)
        assert re.fullmatch(r"WARNING api\.server: the HTTP server \(granian\) exited with code 1 because its "
                            r"serving process worker-[12] ended", line), stderr
        assert f"ERROR api: the HTTP server process (pid {manager.pid}) has ended (exit code 1); exiting so the " \
               "supervisor restarts the API" in stderr
