"""The supervisor's event journal and the `events` command, driven by the fake host and clock.

The journal is what the alerts worker pulls: every kind of event the loop
alone knows must land there, once, with what a person needs to act; and the
workers that go last (the alerts worker) must still run while the stop is told.
"""
import datetime
import signal

import pytest

from supervisor import commands
from supervisor.config import from_tables
from supervisor.events import EventJournal
from supervisor.logs import LineFormatter
from supervisor.loop import Supervisor
from supervisor.shared.registry import Kind
from supervisor.states import WorkerState
from tests import configs
from tests.fakehost import FakeHost, FakeNotifier

S = WorkerState
REGISTRY = configs.REGISTRY.with_kinds(last=Kind(entry="workers.demo:run", help="goes last", stop_last=True))


def make(workers=None, **supervisor):
    workers = workers or {"a": {"kind": "faulty", "interval": 10.0}}
    host, notifier = FakeHost(), FakeNotifier()
    notifier.host = host
    config = from_tables(configs.tables(workers, **supervisor), registry=REGISTRY)
    sup = Supervisor(config, host, notifier, LineFormatter(journal=False), load_config=configs.load)
    return sup, host, notifier


def run_until(sup, condition, limit=10_000):
    for _ in range(limit):
        if condition():
            return
        sup.run_once()
    raise AssertionError("condition not reached")


def kinds(sup):
    return [e["kind"] for e in sup.journal.events]


def events(sup, after=""):
    answer, follows = commands.handle(sup, {"cmd": "events", "after": after})
    assert answer["ok"] and follows is None
    return answer


def test_a_hang_kill_is_journalled_with_what_the_worker_was_doing():
    sup, host, _ = make()
    sup.run_once()
    host.beat("a", "fetch", "TSLA")
    run_until(sup, lambda: "killed" in kinds(sup))
    event = sup.journal.events[-1]
    assert event["worker"] == "a" and event["reason"] == "hang"
    assert event["doing"] == "fetch TSLA" and event["item"] == "TSLA"
    assert "no heartbeat for 1.0s" in event["text"]
    assert event["id"] == f"{sup.journal.boot_id}:{event['seq']}"
    when = datetime.datetime.fromtimestamp(host.wall(), datetime.timezone.utc)
    assert event["at"] == when.strftime("%Y-%m-%d %H:%M:%S")  # UTC, as the datasets' timestamps


def test_an_intentional_stop_is_not_journalled():
    sup, host, _ = make()
    sup.run_once()
    host.beat("a")
    sup.run_once()
    sup.stop_on_request(sup.workers["a"])
    run_until(sup, lambda: sup.workers["a"].state is S.STOPPED)
    assert "killed" not in kinds(sup)


def test_a_crash_loop_is_journalled_once_and_its_end_once():
    sup, host, _ = make(backoff_initial=0.1)
    while sup.workers["a"].consecutive_failures < 5:
        sup.run_once()
        if sup.workers["a"].state is S.STARTING:
            host.crash("a")
    assert kinds(sup).count("flapping") == 1
    flapping = next(e for e in sup.journal.events if e["kind"] == "flapping")
    assert flapping["failures"] == 3 and flapping["last"] == "crash"
    run_until(sup, lambda: sup.workers["a"].state is S.STARTING)
    host.beat("a")
    sup.run_once()
    first_beat = host.now()
    host.cycle("a")
    sup.run_once()
    assert sup.workers["a"].is_healthy(host.now()) and "recovered" not in kinds(sup)  # one good cycle is not it
    host.every(0.5, lambda: host.cycle("a"))
    run_until(sup, lambda: "recovered" in kinds(sup))
    assert host.now() >= first_beat + configs.FAST["stable_after"]
    run_until(sup, lambda: host.now() > first_beat + 70)
    assert kinds(sup).count("recovered") == 1


def test_a_worker_healthy_between_crashes_stays_in_its_crash_loop():
    sup, host, _ = make(backoff_initial=0.1, backoff_max=0.1)
    for _ in range(8):
        run_until(sup, lambda: sup.workers["a"].state is S.STARTING)
        host.beat("a")
        host.cycle("a")  # healthy for a moment...
        sup.run_once()
        host.crash("a")  # ...then down again
        sup.run_once()
    assert kinds(sup).count("flapping") == 1 and "recovered" not in kinds(sup)


def test_a_failed_fork_that_turns_flapping_is_journalled():
    sup, host, _ = make(backoff_initial=0.1)
    host.spawn_error = OSError(11, "Resource temporarily unavailable")
    run_until(sup, lambda: "flapping" in kinds(sup))
    assert "cannot start a process" in sup.journal.events[-1]["last"]


def test_escalation_is_journalled():
    sup, host, _ = make(escalate_after=3, escalate_window=60.0, backoff_initial=0.1)
    while not sup.escalated:
        sup.run_once()
        if sup.workers["a"].state is S.STARTING:
            host.crash("a")
    assert kinds(sup).count("escalated") == 1
    assert "systemd restarts the whole service" in sup.journal.events[-1]["text"]


def test_ready_is_journalled_as_started_with_the_status_line():
    sup, host, _ = make()
    sup.run_once()
    host.beat("a")
    host.cycle("a")
    run_until(sup, lambda: "started" in kinds(sup))
    assert sup.journal.events[-1]["status"] == "1/1 healthy"


def test_the_last_worker_runs_until_every_other_has_exited_and_hears_the_stop():
    sup, host, _ = make({"a": {"kind": "faulty", "interval": 10.0},
                         "alerts": {"kind": "last", "interval": 1.0}})
    sup.run_once()
    for name in ("a", "alerts"):
        host.beat(name)
    sup.run_once()
    host.process_of("a").ignores_term = True  # it takes its stop_timeout to go
    sup.begin_shutdown("SIGTERM")
    last = host.process_of("alerts")
    assert kinds(sup)[-1] == "stopping"
    assert signal.SIGTERM in host.process_of("a").signals and not last.signals
    while host.process_of("a").alive:
        host.beat("alerts")
        sup.run_once()
        assert not last.signals, "the last worker was stopped before the others had exited"
    run_until(sup, lambda: last.signals)
    assert kinds(sup)[-2:] == ["stopping", "stopped"]
    assert last.signals[:2] == [signal.SIGTERM, signal.SIGCONT]
    run_until(sup, lambda: sup.finished)


def test_a_shutdown_with_no_last_worker_still_ends():
    sup, host, _ = make()
    sup.run_once()
    host.beat("a")
    sup.run_once()
    sup.begin_shutdown("SIGTERM")
    run_until(sup, lambda: sup.finished)
    assert kinds(sup)[-2:] == ["stopping", "stopped"]


def test_events_after_an_id_are_the_newer_ones_and_another_boots_id_gets_all():
    sup, host, _ = make()
    for n in range(5):
        sup.journal.append("killed", f"event {n}")
    everything = events(sup)
    assert [e["text"] for e in everything["events"]] == [f"event {n}" for n in range(5)]
    assert everything["boot_id"] == sup.journal.boot_id and not everything["more"]
    third = everything["events"][2]["id"]
    assert [e["text"] for e in events(sup, third)["events"]] == ["event 3", "event 4"]
    assert events(sup, everything["events"][-1]["id"])["events"] == []
    assert len(events(sup, "0123456789ab:3")["events"]) == 5  # a previous mdwd's id


def test_an_overflowing_journal_drops_the_oldest_and_says_how_many_a_client_missed():
    journal = EventJournal(lambda: 0.0, boot_id="b", limit=10)
    for n in range(25):
        journal.append("killed", f"event {n}")
    answer = journal.after("")
    assert answer["dropped"] == 15 and answer["missed"] == 15
    assert [e["seq"] for e in answer["events"]] == list(range(16, 26))
    answer = journal.after("b:12")
    assert answer["missed"] == 3 and answer["events"][0]["seq"] == 16
    assert journal.after("b:20")["missed"] == 0


def test_events_are_answered_in_pages():
    journal = EventJournal(lambda: 0.0, boot_id="b")
    for n in range(450):
        journal.append("killed", "x")
    first = journal.after("")
    assert len(first["events"]) == 200 and first["more"]
    second = journal.after(first["events"][-1]["id"])
    assert second["events"][0]["seq"] == 201 and second["more"]
    third = journal.after(second["events"][-1]["id"])
    assert len(third["events"]) == 50 and not third["more"]


@pytest.mark.parametrize("request_", [{"after": 5}, {"after": "x" * 65}, {"limit": 0}, {"limit": True},
                                      {"limit": 201}])
def test_a_bad_events_request_is_a_usage_error(request_):
    sup, _, _ = make()
    answer, _ = commands.handle(sup, {"cmd": "events", **request_})
    assert answer["ok"] is False and answer["kind"] == "usage"


def test_junk_event_ids_count_as_none():
    journal = EventJournal(lambda: 0.0, boot_id="b")
    journal.append("started", "x")
    for junk in ("b:", "b:-1", "b:x", ":", "b:1:2"):
        assert len(journal.after(junk)["events"]) == 1
