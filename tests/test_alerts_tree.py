"""Alerts from a real tree to a local receiver (apprise's json:// to 127.0.0.1), with every way the
receiver can let us down: answering 500, hanging, trickling; and the alerts worker itself killed."""
import datetime
import os
import re
import signal
import threading
import urllib.request

import pytest

from supervisor.shared.control_client import ControlClient
from tests.alert_receiver import Receiver
from tests.proctree import poll
from tests.test_supervisor_signals import FakeSystemd

pytestmark = pytest.mark.slow
HEALTHY = {"kind": "faulty", "interval": 0.5, "beat_interval": 0.05}


def alerts_worker(**settings):
    return {"kind": "alerts", "interval": 0.2, "heartbeat_timeout": 3.0, "stop_timeout": 3.0, **settings}


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


def text(bodies):
    return "\n".join(f"{b.get('title')}\n{b.get('message')}" for b in bodies)


def says(*phrases):
    return lambda bodies: all(p in text(bodies) for p in phrases)


def control(tree):
    return ControlClient(tree.state_dir / "mdwd.sock")


def row(tree, name):
    return next(r for r in control(tree).call("status")["workers"] if r["name"] == name)


def journal(tree, kind=None):
    return [e for e in control(tree).call("events")["events"] if kind is None or e["kind"] == kind]


def test_a_hang_a_quarantine_a_crash_loop_the_start_and_the_stop_reach_the_receiver(make_tree, receiver):
    tree = make_tree({"watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": ["AAPL", "TSLA"],
                                    "batch_size": 1, "schedule": "always"},
                      "crashy": {"kind": "faulty", "interval": 1.0, "mode": "crash_at_start"},
                      "alerts": alerts_worker()},
                     {"provider": {"sim_hang_symbols": ["TSLA"]}, "alerts": {"urls": [receiver.url]}}).start()
    receiver.wait(says("mdwd started", "watchlist killed (hang: no heartbeat for 1.0s; last beat 'fetch TSLA')",
                       "TSLA quarantined by watchlist", "crashy is in a crash loop"), 30)
    assert tree.stop() == 0
    receiver.wait(says("mdwd is stopping (SIGTERM)", "every worker has stopped"), 5)
    assert re.search(r"alerts: pid \d+ ended: exit 0 \(shutdown: supervisor got SIGTERM \(stopped last\)\)", tree.log())


def kill_times(bodies, worker="f"):
    """When each delivered "<worker> killed" alert happened (HH:MM:SS), alone or in a digest."""
    times = []
    for body in bodies:
        if f"] {worker} killed: " in body.get("title", ""):
            times += re.findall(r"\(\d{4}-\d\d-\d\d (\d\d:\d\d:\d\d) UTC\)", body["message"])
        else:
            times += re.findall(rf"^(\d\d:\d\d:\d\d) {worker} killed \(", body.get("message", ""), re.M)
    return times


def test_nothing_is_lost_or_sent_twice_when_the_alerts_worker_is_killed(make_tree, receiver):
    tree = make_tree({"f": {"kind": "faulty", "interval": 0.5, "mode": "hang_sleep", "after": 1.0, "stale_cycles": 0},
                      "alerts": alerts_worker(heartbeat_timeout=5.0)},  # f is killed about every 2.5 s
                     {"alerts": {"urls": [receiver.url], "max_messages_per_minute": 600}}).start()
    receiver.wait(lambda bodies: len(kill_times(bodies)) >= 2, 30)

    def kills():
        return [e for e in journal(tree, "killed") if e["worker"] == "f"]

    def idle():  # every kill so far delivered and marked: the worker is between passes, not in a send
        counters = row(tree, "alerts")["reported"].get("counters") or {}
        return (len(kills()) == len(kill_times(receiver.bodies)) and
                sum(counters.get("alerts_pending", {}).values()) == 0)

    poll(idle, 10, what="the alerts worker idle with everything delivered")
    pid = row(tree, "alerts")["pid"]
    tree_pid = tree.pid
    told = len(kills())
    os.kill(pid, signal.SIGSTOP)  # wedged: events go on happening; then the supervisor kills it (a hang)
    tree.wait_log(rf"alerts: stopping pid {pid} \(hang: no heartbeat for 5.0s", timeout=10)
    (its_kill,) = [e for e in journal(tree, "killed") if e["worker"] == "alerts"]
    assert len([e for e in kills() if e["seq"] < its_kill["seq"]]) > told, "no kill while the alerts worker was stopped"
    poll(lambda: row(tree, "alerts")["pid"] not in (None, pid), 10, what="a new alerts worker")
    os.kill(row(tree, "alerts")["pid"], signal.SIGKILL)  # and its successor, kill -9
    poll(lambda: row(tree, "alerts")["state"] == "RUNNING" and row(tree, "alerts")["restarts"] == 2, 10,
         what="a third alerts worker")
    done = poll(lambda: len(kills()) >= 4 and len(kill_times(receiver.bodies)) >= len(kills()) and kills(), 20,
                what=lambda: f"every kill delivered: {receiver.titles()}")
    delivered = kill_times(receiver.bodies)
    assert len(delivered) == len(set(delivered)), f"an alert was sent twice: {delivered}"
    assert delivered[:len(done)] == [e["at"][11:] for e in done]
    assert says("alerts killed (hang")(receiver.bodies)  # its own kill, told by its successor
    assert tree.pid == tree_pid and tree.stop() == 0


def test_a_receiver_answering_500_is_retried_with_backoff_and_counted_in_metrics(make_tree, receiver):
    receiver.mode = "fail"
    tree = make_tree({"api": {"kind": "api", "interval": 1.0}, "alerts": alerts_worker()},
                     {"api": {"port": 0}, "alerts": {"urls": [receiver.url], "retry_initial": 0.3,
                                                     "retry_max": 10.0}}).start()
    port = tree.api_port()
    poll(lambda: len(receiver.attempts) >= 4, 30, what="four attempts")
    times = [t for t, _ in receiver.attempts[:4]]
    gaps = [b - a for a, b in zip(times, times[1:])]
    backoffs = [0.3, 0.6, 1.2]  # retry_initial, doubling; plus up to a pass (0.2 s) and the send
    assert all(b <= gap < b + 1.0 for b, gap in zip(backoffs, gaps)), f"attempts {gaps}"
    label = f"json://127.0.0.1:{receiver.port}"

    def metric(name):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            found = re.search(rf'^{name}{{url="{re.escape(label)}"}} ([\d.e+]+)$', answer.read().decode(), re.M)
        return float(found.group(1)) if found else None

    poll(lambda: (metric("mdw_alerts_failed_total") or 0) >= 3, 10, what="the failures in /metrics")
    assert metric("mdw_alerts_pending") >= 1
    status = control(tree).call("status")["supervisor"]["status"]
    assert f"warning: alerts to {label} failing (" in status and "error=500" in status, status
    receiver.mode = "ok"
    receiver.wait(says("mdwd started"), 15)
    poll(lambda: metric("mdw_alerts_sent_total") == 1 and metric("mdw_alerts_pending") == 0, 10,
         what="the delivery in /metrics")
    poll(lambda: "warning: alerts" not in control(tree).call("status")["supervisor"]["status"], 5,
         what="the warning gone")
    assert tree.stop() == 0


def test_a_hanging_receiver_costs_the_alerts_worker_only_and_the_watchdog_never_misses(make_tree, receiver, tmp_path):
    receiver.mode = "trickle"  # headers one byte at a time: no connect or read timeout ever fires
    systemd = FakeSystemd(tmp_path / "notify.sock")
    listening = threading.Event()

    def listen():
        while not listening.is_set():
            systemd.receive(0.1)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    try:
        tree = make_tree({"f": {**HEALTHY, "beat_log": "f.beats"},
                          "alerts": alerts_worker(heartbeat_timeout=2.0)},
                         {"alerts": {"urls": [receiver.url], "timeout": 0.5, "retry_initial": 0.5}}
                         ).start(NOTIFY_SOCKET=systemd.path, WATCHDOG_USEC="1000000")
        tree.wait_log(r"alerts: stopping pid \d+ \(hang: no heartbeat for 2.0s; last beat 'send json://127", 15)
        tree.wait_log(r"alerts: stopping pid \d+ \(hang: no heartbeat for 2.0s; last beat 'send json://127", 15,
                      count=2)
        receiver.mode = "ok"
        receiver.released.set()  # the trickling answers end
        receiver.wait(says("mdwd started", "alerts killed (hang: no heartbeat for 2.0s; last beat 'send json://127."),
                      20)
        f = row(tree, "f")
        assert f["restarts"] == 0 and f["healthy"], f
        assert tree.max_beat_gap("f.beats") < 0.5
    finally:
        listening.set()
        listener.join(2)
        systemd.close()
    pings = [t for t, m in systemd.messages if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert len(pings) >= 5 and max(gaps) < 0.5 + 0.3, f"watchdog gaps {gaps}"
    assert tree.stop() == 0


def test_the_incident_on_the_embedded_defaults_reaches_a_person(make_tree, receiver):
    timings = {"heartbeat_timeout": 3.0, "startup_timeout": 10.0, "backoff_initial": 0.5, "backoff_max": 5.0}
    tree = make_tree(None, {"provider": {"sim_hang_symbols": ["TSLA"]}, "api": {"port": 0},
                            "alerts": {"urls": [receiver.url], "max_messages_per_minute": 20},  # 6: a minute more
                            "workers": {"alerts": {"heartbeat_timeout": 12.0}}}, **timings).start()
    # the seven scanners, the API and the alerts have all beaten (slower under load); those hung on TSLA
    # may be failing already, silent for over half their heartbeat_timeout
    tree.wait_log(r"ready: \d/9 healthy", 60)
    receiver.wait(says("watchlist killed (hang: no heartbeat for 3.0s; last beat 'fetch SPY,QQQ,",
                       "last beat 'fetch TSLA'", "TSLA quarantined by watchlist", "TSLA quarantined by macd"), 40)
    assert tree.stop() == 0
    receiver.wait(says("every worker has stopped"), 10)


def test_thirty_crosses_written_by_a_scanner_reach_the_receiver_as_one_digest(make_tree, receiver):
    from tests.test_history import macd_row
    from workers.store import StoreWriter

    signals = {"macd_cross": {"enabled": True, "direction": "bullish"}}
    tree = make_tree({"alerts": alerts_worker()},
                     {"alerts": {"urls": [receiver.url], "signals": signals, "max_messages_per_minute": 60}}).start()
    receiver.wait(says("mdwd started"), 15)  # its first pass is done: what is written now is news
    symbols = [f"S{n:02d}" for n in range(30)]
    writer = StoreWriter(tree.state_dir)  # as the macd scanner writes a cycle: rows and signals, one transaction
    rows = [macd_row(s, bullish=True) for s in symbols] + [macd_row("BEAR", bearish=True)]
    writer.replace_snapshot("macd_scanner", rows, session=datetime.date.today())
    bodies = receiver.wait(says("30 signals"), 15)
    (digest,) = [b for b in bodies if b["title"].endswith("30 signals")]
    assert digest["message"] == "MACD bullish cross on S00, S01, S02, S03, S04, S05, S06, S07, ... (+22 more) (30)"
    assert tree.stop() == 0
    assert "BEAR" not in text(receiver.bodies)
