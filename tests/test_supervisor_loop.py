"""The supervisor loop driven by a fake host and a fake clock: exact and fast."""
import logging
import signal

import pytest

from supervisor import config as config_module
from supervisor.logs import LineFormatter
from supervisor.loop import Supervisor
from supervisor.states import StopReason, WorkerState
from tests import configs
from tests.fakehost import FakeHost, FakeNotifier

S = WorkerState
HB = 1.0  # heartbeat_timeout in configs.FAST


def make(workers=None, watchdog=None, load_config=None, **supervisor):
    workers = workers or {"a": {"kind": "faulty", "interval": 10.0}}
    host, notifier = FakeHost(), FakeNotifier(watchdog)
    notifier.host = host
    config = configs.build(workers, **supervisor)
    sup = Supervisor(config, host, notifier, LineFormatter(journal=False),
                     load_config=load_config or configs.load)
    return sup, host, notifier


def run_until(sup, host, condition, limit=10_000):
    for _ in range(limit):
        if condition():
            return
        sup.run_once()
    raise AssertionError(f"condition not reached by t={host.now()}")


def start(sup, host, name="a"):
    sup.run_once()  # spawns
    host.beat(name, "fetch", "AAPL")
    sup.run_once()
    assert sup.workers[name].state is S.RUNNING


def test_first_beat_makes_a_started_child_running():
    sup, host, _ = make()
    sup.run_once()
    assert sup.workers["a"].state is S.STARTING
    host.beat("a")
    sup.run_once()
    assert sup.workers["a"].state is S.RUNNING


def test_silent_child_is_stopped_exactly_at_heartbeat_timeout():
    sup, host, _ = make()
    start(sup, host)
    beat_at = host.now()
    run_until(sup, host, lambda: sup.workers["a"].state is not S.RUNNING)
    proc = host.process_of("a")
    assert host.now() == pytest.approx(beat_at + HB)
    assert proc.signals[:2] == [signal.SIGTERM, signal.SIGCONT]
    assert sup.workers["a"].last_exit is None or sup.workers["a"].last_exit.reason is StopReason.HANG


def test_hung_child_is_replaced_after_backoff_and_gets_the_item_it_hung_on():
    sup, host, _ = make()
    start(sup, host)
    first = host.process_of("a")
    run_until(sup, host, lambda: host.process_of("a") is not first)
    worker = sup.workers["a"]
    assert worker.last_exit.reason is StopReason.HANG
    assert worker.last_exit.doing == "fetch AAPL"
    assert host.process_of("a").handed_over.names("fetch", "AAPL")
    assert worker.restarts == 1


def test_child_ignoring_sigterm_is_killed_after_stop_timeout():
    sup, host, _ = make()
    start(sup, host)
    proc = host.process_of("a")
    proc.ignores_term = True
    run_until(sup, host, lambda: sup.workers["a"].state is S.RESTARTING)
    termed_at = host.now()
    run_until(sup, host, lambda: signal.SIGKILL in proc.signals)
    assert host.now() == pytest.approx(termed_at + configs.FAST["stop_timeout"])


def test_no_first_beat_within_startup_timeout_is_a_hang():
    sup, host, _ = make(startup_timeout=3.0)
    sup.run_once()
    spawned = host.now()
    run_until(sup, host, lambda: sup.workers["a"].state is S.RESTARTING or sup.workers["a"].last_exit)
    assert host.now() == pytest.approx(spawned + 3.0)
    assert "startup_timeout" in sup.workers["a"].stop_detail or "startup_timeout" in sup.workers["a"].last_exit.detail


def test_beating_child_without_successful_cycles_is_stalled():
    sup, host, _ = make({"a": {"kind": "faulty", "interval": 2.0, "stale_cycles": 2}})
    start(sup, host)
    host.every(0.5, lambda: host.beat("a"))
    run_until(sup, host, lambda: sup.workers["a"].last_exit is not None)
    assert sup.workers["a"].last_exit.reason is StopReason.STALLED


def test_successful_cycles_keep_a_child_from_stalling():
    sup, host, _ = make({"a": {"kind": "faulty", "interval": 2.0, "stale_cycles": 2}})
    start(sup, host)
    host.every(0.5, lambda: host.cycle("a"))
    run_until(sup, host, lambda: host.now() > 1060)
    assert sup.workers["a"].restarts == 0


def test_garbage_on_the_heartbeat_pipe_stops_the_child():
    sup, host, _ = make()
    start(sup, host)
    host.send("a", b"\x00garbage\n")
    sup.run_once()
    assert sup.workers["a"].stop_reason is StopReason.PROTOCOL or sup.workers["a"].last_exit.reason is StopReason.PROTOCOL


def test_oversized_heartbeat_line_stops_the_child_without_buffering_it():
    sup, host, _ = make()
    start(sup, host)
    host.send("a", b'{"t": "beat", "phase": "' + b"x" * 10_000)
    sup.run_once()
    assert sup.workers["a"].stop_reason is StopReason.PROTOCOL or sup.workers["a"].last_exit.reason is StopReason.PROTOCOL


def test_memory_over_limit_stops_the_child():
    sup, host, _ = make(max_rss_mb=100)
    start(sup, host)
    host.every(0.2, lambda: host.beat("a"))
    host.rss[host.process_of("a").pid] = 150.0
    run_until(sup, host, lambda: sup.workers["a"].last_exit is not None)
    assert sup.workers["a"].last_exit.reason is StopReason.MEMORY
    assert "150 MiB" in sup.workers["a"].last_exit.detail


def test_backoff_doubles_with_jitter_caps_and_turns_flapping():
    sup, host, _ = make(backoff_initial=1.0, backoff_max=4.0)
    delays = []
    for _ in range(6):
        sup.run_once()  # spawn
        host.crash("a")
        sup.run_once()  # reap
        worker = sup.workers["a"]
        delays.append(worker.backoff_s)
        states = worker.state
        run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    for got, base in zip(delays, [1, 2, 4, 4, 4, 4]):
        assert base * 0.9 <= got <= min(4.0, base * 1.1)
    assert states is S.FLAPPING


def test_stable_run_resets_the_backoff():
    sup, host, _ = make(backoff_initial=1.0, backoff_max=30.0, stable_after=5.0)
    for _ in range(3):
        sup.run_once()
        host.crash("a")
        sup.run_once()
        run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
    assert sup.workers["a"].state is S.STARTING and sup.workers["a"].consecutive_failures == 3
    host.beat("a")
    sup.run_once()
    stable_from = host.now()
    host.every(0.5, lambda: host.beat("a"))
    run_until(sup, host, lambda: host.now() >= stable_from + 6)
    host.crash("a")
    run_until(sup, host, lambda: sup.workers["a"].state is not S.RUNNING)
    assert sup.workers["a"].state is S.BACKOFF
    assert sup.workers["a"].backoff_s <= 1.1


def test_loop_never_sleeps_past_the_nearest_deadline():
    sup, host, _ = make(heartbeat_timeout=0.3)
    start(sup, host)
    host.waits.clear()
    sup.run_once()
    assert host.waits[-1] == pytest.approx(0.3, abs=1e-9)


def test_crash_loop_keeps_the_loop_asleep_between_attempts():
    sup, host, _ = make(backoff_initial=1.0, backoff_max=8.0)
    passes = 0
    while host.now() < 1060:
        sup.run_once()
        passes += 1
        if sup.workers["a"].state is S.STARTING:
            host.crash("a")
    # At most one pass per second of fake time, plus the reap/spawn passes: no spinning.
    assert passes < 60 + 3 * sup.workers["a"].spawns
    assert sup.workers["a"].state in (S.FLAPPING, S.STARTING)


def test_unknown_pid_is_logged_not_fatal(caplog):
    caplog.set_level(logging.INFO)
    sup, host, _ = make()
    start(sup, host)
    host.exits.append((99999, 0))
    host.beat("a")
    sup.run_once()
    assert "reaped pid 99999, not one of our workers" in caplog.text
    assert sup.workers["a"].state is S.RUNNING


def test_sigterm_stops_everything_and_finishes():
    sup, host, notifier = make({"a": {"kind": "faulty", "interval": 5.0}, "b": {"kind": "faulty", "interval": 5.0}})
    sup.run_once()
    host.beat("a")
    host.beat("b")
    sup.run_once()
    host.deliver_signal(signal.SIGTERM)
    run_until(sup, host, lambda: sup.finished)
    assert all(w.state is S.STOPPED for w in sup.workers.values())
    assert notifier.times("STOPPING=1")


def test_ready_only_after_every_child_beats():
    sup, host, notifier = make({"a": {"kind": "faulty", "interval": 5.0}, "b": {"kind": "faulty", "interval": 5.0}})
    sup.run_once()
    host.beat("a")
    sup.run_once()
    assert not notifier.times("READY=1")
    host.beat("b")
    sup.run_once()
    assert notifier.times("READY=1")


def test_watchdog_pinged_every_interval_while_the_loop_runs():
    sup, host, notifier = make(watchdog=0.5)
    start(sup, host)
    host.every(0.2, lambda: host.beat("a"))
    run_until(sup, host, lambda: host.now() >= 1010)
    pings = notifier.times("WATCHDOG=1")
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 19 and max(gaps) <= 0.5 + 1e-9


def test_escalation_stops_the_watchdog_pings():
    sup, host, notifier = make(watchdog=0.5, escalate_after=3, escalate_window=60.0, backoff_initial=0.1)
    while not sup.escalated and host.now() < 1100:
        sup.run_once()
        if sup.workers["a"].state is S.STARTING:
            host.crash("a")
    assert sup.escalated
    escalated_at = host.now()
    run_until(sup, host, lambda: host.now() > escalated_at + 5)
    assert notifier.times("WATCHDOG=trigger")
    assert not [t for t in notifier.times("WATCHDOG=1") if t > escalated_at]
    assert "escalating" in notifier.status


def test_status_line_names_the_unhealthy_worker_and_why():
    sup, host, notifier = make({"a": {"kind": "faulty", "interval": 5.0}, "b": {"kind": "faulty", "interval": 5.0}},
                               backoff_initial=8.0, backoff_max=8.0)
    sup.run_once()
    host.beat("a")
    host.beat("b", "fetch", "TSLA")
    sup.run_once()
    host.every(0.2, lambda: host.beat("a"))
    run_until(sup, host, lambda: sup.workers["b"].state is S.BACKOFF)
    assert notifier.status.startswith("1/2 healthy; b backoff ")
    assert "(hang: fetch TSLA)" in notifier.status


def test_reload_restarts_changed_starts_added_stops_removed():
    five = {"kind": "faulty", "interval": 5.0}
    new_tables = configs.tables({"keep": five, "change": {"kind": "faulty", "interval": 7.0}, "add": five})
    sup, host, _ = make({"keep": five, "change": five, "drop": five},
                        load_config=lambda path: configs.from_tables(new_tables))
    sup.run_once()
    for name in ("keep", "change", "drop"):
        host.beat(name)
    sup.run_once()
    keep_pid = sup.workers["keep"].pid
    host.deliver_signal(signal.SIGHUP)
    run_until(sup, host, lambda: "add" in sup.workers and sup.workers["add"].pid and "drop" not in sup.workers
              and sup.workers["change"].state is S.STARTING)
    assert sup.workers["keep"].pid == keep_pid
    assert sup.workers["change"].spec.interval == 7.0
    assert sup.workers["change"].last_exit.reason is StopReason.CONFIG


def test_bad_config_on_reload_keeps_the_running_tree(caplog):
    def broken(path):
        raise config_module.ConfigError(["supervisor.heartbeat_timeout = -1: allowed is a number > 0"], "x.toml")

    sup, host, _ = make(load_config=broken)
    start(sup, host)
    pid = sup.workers["a"].pid
    host.deliver_signal(signal.SIGHUP)
    host.beat("a")
    sup.run_once()
    assert sup.workers["a"].pid == pid and sup.workers["a"].state is S.RUNNING
    assert "heartbeat_timeout = -1" in caplog.text and "config rejected" in caplog.text


def test_fork_failure_is_retried_with_backoff_not_fatal():
    sup, host, _ = make(backoff_initial=1.0, backoff_max=8.0)
    host.spawn_error = OSError(11, "Resource temporarily unavailable")
    delays = []
    while len(delays) < 4:
        sup.run_once()
        worker = sup.workers["a"]
        if worker.state in (S.BACKOFF, S.FLAPPING) and (not delays or worker.backoff_s != delays[-1]):
            delays.append(worker.backoff_s)
    for got, base in zip(delays, [1, 2, 4, 8]):
        assert base * 0.9 <= got <= min(8.0, base * 1.1)
    assert sup.workers["a"].state is S.FLAPPING
    assert "cannot start a process: Resource temporarily unavailable" in sup.workers["a"].failing
    host.spawn_error = None
    run_until(sup, host, lambda: sup.workers["a"].state is S.STARTING)
