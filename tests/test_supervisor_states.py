"""The state machine keeps its promises, and health tells the truth (fake host, fake clock)."""
import logging
import re
import signal

import pytest

from supervisor import status
from supervisor.shared import protocol
from supervisor.states import ALLOWED_TRANSITIONS, StopReason, WorkerState
from tests import configs
from tests.test_supervisor_loop import HB, make, run_until, start

S = WorkerState
FIVE = {"kind": "faulty", "interval": 5.0}


def reloading(tables_by_call):
    """A load_config that returns the given configs one after the other."""
    calls = iter(tables_by_call)
    return lambda path: configs.from_tables(next(calls))


def hang(sup, host, name="a"):
    """Let worker `name` go silent until the supervisor starts stopping it for a hang."""
    run_until(sup, host, lambda: sup.workers[name].state is S.RESTARTING)
    assert sup.workers[name].stop_reason is StopReason.HANG


def test_worker_removed_while_stopping_for_a_hang_disappears():
    sup, host, _ = make({"a": FIVE, "b": FIVE}, load_config=reloading([configs.tables({"b": FIVE})]))
    start(sup, host)
    host.process_of("a").ignores_term = True  # so that it is still stopping when the reload comes
    host.every(0.2, lambda: host.beat("b"))
    hang(sup, host)
    host.deliver_signal(signal.SIGHUP)
    sup.run_once()
    assert sup.workers["a"].state is S.RETIRING
    run_until(sup, host, lambda: "a" not in sup.workers)
    run_until(sup, host, lambda: host.now() > 1030)
    assert "a" not in sup.workers and len([p for p in host.processes.values() if p.spec.name == "a"]) == 1


def test_worker_added_back_with_the_same_spec_starts_again():
    tables = configs.tables({"a": FIVE, "b": FIVE})
    sup, host, _ = make({"a": FIVE, "b": FIVE},
                        load_config=reloading([configs.tables({"b": FIVE}), tables, configs.tables({"b": FIVE}), tables]))
    start(sup, host)
    host.process_of("a").ignores_term = True
    host.deliver_signal(signal.SIGHUP)  # removed...
    sup.run_once()
    assert sup.workers["a"].state is S.RETIRING
    host.deliver_signal(signal.SIGHUP)  # ...and added back before its process is gone
    sup.run_once()
    assert sup.workers["a"].state is S.RESTARTING
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    host.beat("a")
    sup.run_once()
    host.deliver_signal(signal.SIGHUP)  # removed for good this time...
    run_until(sup, host, lambda: "a" not in sup.workers)
    host.deliver_signal(signal.SIGHUP)  # ...and added back as a new worker
    run_until(sup, host, lambda: "a" in sup.workers and sup.workers["a"].state is S.STARTING)


def test_manual_stop_during_a_hang_stop_ends_stopped():
    sup, host, _ = make()
    start(sup, host)
    host.process_of("a").ignores_term = True
    hang(sup, host)
    sup.stop_on_request(sup.workers["a"])
    assert sup.workers["a"].state is S.STOPPING
    run_until(sup, host, lambda: not sup.workers["a"].has_process)
    run_until(sup, host, lambda: host.now() > 1030)
    worker = sup.workers["a"]
    assert worker.state is S.STOPPED and not worker.wanted
    assert worker.last_exit.reason is StopReason.HANG  # the record says why it was being stopped
    assert len(host.processes) == 1


def test_reload_that_changes_a_worker_stopped_on_purpose_leaves_it_stopped():
    sup, host, _ = make({"a": FIVE}, load_config=reloading([configs.tables({"a": {**FIVE, "interval": 7.0}})]))
    start(sup, host)
    sup.stop_on_request(sup.workers["a"])
    run_until(sup, host, lambda: sup.workers["a"].state is S.STOPPED)
    host.deliver_signal(signal.SIGHUP)
    run_until(sup, host, lambda: host.now() > 1020)
    assert sup.workers["a"].state is S.STOPPED and sup.workers["a"].spec.interval == 7.0
    sup.start_on_request(sup.workers["a"])
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    assert host.process_of("a").spec.interval == 7.0


def test_start_request_during_a_stop_restarts_it_once_it_has_exited():
    sup, host, _ = make()
    start(sup, host)
    host.process_of("a").ignores_term = True
    sup.stop_on_request(sup.workers["a"])
    sup.start_on_request(sup.workers["a"])
    assert sup.workers["a"].state is S.RESTARTING
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    assert len(host.processes) == 2 and sup.workers["a"].consecutive_failures == 0


def test_restart_with_last_restarts_the_others_first():
    sup, host, _ = make({"a": FIVE, "b": FIVE, "api": FIVE})
    sup.run_once()
    for name in ("a", "b", "api"):
        host.beat(name)
    sup.run_once()
    api_pid = sup.workers["api"].pid
    sup.restart_on_request(list(sup.workers.values()), last=frozenset({"api"}))
    assert sup.workers["a"].state is S.RESTARTING and sup.workers["api"].state is S.RUNNING
    host.every(0.1, lambda: host.beat("api"))
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING and sup.workers["b"].state is S.STARTING)
    assert sup.workers["api"].pid == api_pid  # still waiting for the others to beat
    host.beat("a")
    host.beat("b")
    run_until(sup, host, lambda: sup.workers["api"].pid != api_pid)
    assert sup.workers["api"].last_exit.reason is StopReason.MANUAL


def test_every_state_can_be_left_except_removed():
    assert all(targets for state, targets in ALLOWED_TRANSITIONS.items() if state is not S.REMOVED)
    assert ALLOWED_TRANSITIONS[S.REMOVED] == frozenset()


# -- health ------------------------------------------------------------------------


def test_failed_cycle_makes_a_running_worker_failing_with_the_reason_at_once():
    sup, host, notifier = make()
    start(sup, host)
    host.send("a", b'{"t":"cycle","ok":false,"duration":0.5,"counts":{},"error":"no quote for any of 174 symbols"}\n')
    sup.run_once()
    worker = sup.workers["a"]
    assert worker.state is S.RUNNING and not worker.is_healthy(host.now())
    assert status.problem(worker, host.now()) == "failing (last cycle failed: no quote for any of 174 symbols)"
    assert notifier.status == "0/1 healthy; a failing (last cycle failed: no quote for any of 174 symbols)"
    host.cycle("a", ok=True)
    sup.run_once()
    assert worker.is_healthy(host.now()) and notifier.status == "1/1 healthy"


def test_restart_does_not_make_a_failing_worker_healthy():
    sup, host, _ = make({"a": {"kind": "faulty", "interval": 60.0}})
    start(sup, host)
    host.cycle("a", ok=False)
    sup.run_once()
    sup.restart_on_request([sup.workers["a"]])
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    host.beat("a")
    sup.run_once()
    assert sup.workers["a"].state is S.RUNNING and not sup.workers["a"].is_healthy(host.now())


def test_worker_killed_for_a_hang_stays_failing_until_a_good_cycle():
    sup, host, _ = make()
    start(sup, host)
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    host.beat("a")
    sup.run_once()
    worker = sup.workers["a"]
    assert worker.failing_reason(host.now()) == "hang: fetch AAPL; no successful cycle since"
    host.cycle("a")
    sup.run_once()
    assert worker.is_healthy(host.now())


def test_worker_with_no_successful_cycle_is_failing_after_startup_timeout_plus_interval():
    sup, host, notifier = make({"a": {"kind": "faulty", "interval": 10.0}}, startup_timeout=5.0,
                               heartbeat_timeout=30.0)
    sup.run_once()
    spawned = host.now()
    host.beat("a")
    host.every(1.0, lambda: host.beat("a"))
    sup.run_once()
    assert sup.workers["a"].is_healthy(host.now())
    run_until(sup, host, lambda: not sup.workers["a"].is_healthy(host.now()))
    assert host.now() == pytest.approx(spawned + 15.0, abs=1.0)
    assert "no successful cycle in 15s since it started" in notifier.status


def test_a_beat_late_by_half_the_heartbeat_timeout_is_failing_before_the_kill():
    """The incident's first 30 s: a call that never returns is a problem on /health, not only after the kill."""
    sup, host, notifier = make({"a": {"kind": "faulty", "interval": 60.0}}, heartbeat_timeout=30.0)
    start(sup, host)
    host.cycle("a")
    host.send("a", b'{"t":"beat","phase":"fetch","item":"TSLA"}\n')
    sup.run_once()
    worker, beaten = sup.workers["a"], host.now()
    assert worker.is_healthy(host.now())
    run_until(sup, host, lambda: not worker.is_healthy(host.now()))
    assert worker.state is S.RUNNING and host.now() == pytest.approx(beaten + 15.0, abs=1.0)
    assert re.fullmatch(r"failing \(no heartbeat for 1[56]s \(killed at 30s\); last beat 'fetch TSLA'\)",
                        status.problem(worker, host.now()))
    assert "fetch TSLA" in notifier.status


def test_worker_stopped_on_purpose_is_not_a_problem_in_the_status_line():
    sup, host, notifier = make({"a": FIVE, "b": FIVE})
    sup.run_once()
    host.beat("a")
    host.beat("b")
    sup.run_once()
    sup.stop_on_request(sup.workers["b"])
    host.every(0.2, lambda: host.beat("a"))
    run_until(sup, host, lambda: sup.workers["b"].state is S.STOPPED)
    sup.run_once()
    assert notifier.status == "1/1 healthy (1 stopped: b)"


# -- signals -----------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2])
def test_sigusr_is_logged_and_changes_nothing(signum, caplog):
    caplog.set_level(logging.INFO)
    sup, host, _ = make()
    start(sup, host)
    pid = sup.workers["a"].pid
    host.deliver_signal(signum)
    host.beat("a")
    sup.run_once()
    assert not sup.shutting_down and sup.workers["a"].pid == pid
    assert signum.name in caplog.text


def test_second_sigterm_does_not_escalate_to_sigkill():
    sup, host, _ = make()
    start(sup, host)
    host.process_of("a").ignores_term = True
    host.deliver_signal(signal.SIGTERM)
    sup.run_once()
    termed = host.now()
    host.at(termed + 0.6, lambda: host.deliver_signal(signal.SIGTERM))
    run_until(sup, host, lambda: signal.SIGKILL in host.process_of("a").signals)
    assert host.now() == pytest.approx(termed + configs.FAST["stop_timeout"])  # stop_timeout, not the 2nd TERM


def test_second_sigint_kills_what_is_left_at_once():
    sup, host, _ = make()
    start(sup, host)
    host.process_of("a").ignores_term = True
    host.deliver_signal(signal.SIGINT)
    sup.run_once()
    host.at(host.now() + 0.6, lambda: host.deliver_signal(signal.SIGINT))
    second = host.now() + 0.6
    run_until(sup, host, lambda: signal.SIGKILL in host.process_of("a").signals)
    assert host.now() == pytest.approx(second)
    assert HB  # the fake timings are those of configs.FAST


def test_a_bug_met_on_one_childs_pipe_costs_that_child_not_the_loop(monkeypatch, caplog):
    """The error boundary per channel: an exception while handling one child's bytes (here a bug planted
    in the worker record) closes that channel and restarts that child; the loop and the others go on."""
    sup, host, _ = make({"a": FIVE, "b": FIVE})
    sup.run_once()
    host.beat("a")
    host.beat("b")
    sup.run_once()
    real = type(sup.workers["a"]).on_message

    def planted(worker, message, now):
        if worker.name == "a" and message.get("phase") == "boom":
            raise KeyError("planted bug")
        return real(worker, message, now)

    monkeypatch.setattr(type(sup.workers["a"]), "on_message", planted)
    host.beat("a", "boom")
    host.beat("b")
    sup.run_once()
    assert sup.workers["a"].last_exit.reason is StopReason.PROTOCOL and sup.workers["a"].state is S.BACKOFF
    assert "error on its heartbeat pipe" in caplog.text and "KeyError: 'planted bug'" in caplog.text
    assert sup.workers["b"].state is S.RUNNING and not sup.shutting_down


def test_worker_warnings_show_in_the_status_line_until_a_report_without_them():
    sup, host, notifier = make({"a": FIVE, "b": FIVE})
    sup.run_once()
    login = "the Schwab refresh token expires in 1 day 4 h: run mdw-schwab-login"
    for name in ("a", "b"):  # two workers sharing one login: said once
        host.beat(name)
        host.send(name, protocol.encode_status(warnings=[login]))
    sup.run_once()
    assert notifier.status == f"2/2 healthy; warning: {login}"
    assert status.row(sup.workers["a"], host.now())["warnings"] == [login]
    for name in ("a", "b"):
        host.beat(name)
        host.send(name, protocol.encode_status())
    sup.run_once()
    assert notifier.status == "2/2 healthy"


def test_the_exit_summary_says_what_happened_in_words(caplog):
    """Not '0 restarts {'shutdown': 1}': how many processes, restarts, and how each ended."""
    caplog.set_level(logging.INFO)
    sup, host, _ = make()
    start(sup, host)
    run_until(sup, host, lambda: sup.workers["a"].state is S.BACKOFF)  # silent: killed for a hang
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    host.beat("a")
    sup.run_once()
    sup.begin_shutdown("a test")
    run_until(sup, host, lambda: sup.finished)
    sup.log_summary()
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("a: ")
              and "longest heartbeat gap" in r.getMessage()]
    assert line.startswith("a: 2 processes started, 1 restart; exits: 1 hang, 1 shutdown; longest heartbeat gap ")
    assert "{" not in line
