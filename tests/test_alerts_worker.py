"""The alerts worker's logic on a fake clock, fake sources and a fake sender (real outbox, real journal).

Each operational event reaches a person once; signals only as asked; a burst becomes one digest;
the rate limit holds; failures back off and are counted; a restart (or a kill) loses nothing and
sends nothing twice that was marked sent.
"""
import re

import pytest

from supervisor.shared.protocol import Beat, item_key
from tests.alerts_fakes import Harness
from workers.alerts import outbox as outbox_module

URL = "json://127.0.0.1:9001"
OTHER = "json://127.0.0.1:9002"


def row(name="watchlist", quarantined=None, total=None, warnings=(), failing=None, wanted=True):
    reported = {} if quarantined is None else {
        "quarantined": [{"item": i, "why": "the previous process hung on it (fetch TSLA)", "for_s": 900.0}
                        for i in quarantined], "quarantined_total": len(quarantined) if total is None else total}
    return {"name": name, "wanted": wanted, "reported": reported, "warnings": list(warnings), "failing": failing}


@pytest.fixture
def h(tmp_path):
    return Harness(tmp_path)


def test_the_supervisors_events_reach_the_sender_once_each(h):
    journal = h.fake.journal
    journal.append("started", "mdwd started: 6/6 healthy", status="6/6 healthy")
    h.run_pass()
    journal.append("killed", "watchlist killed (hang: no heartbeat for 30.0s; last beat 'fetch TSLA')",
                   worker="watchlist", reason="hang", doing="fetch TSLA", item="TSLA")
    h.passes(12)
    assert h.sender.titles() == ["[mdw@test] service started", "[mdw@test] watchlist killed: hang on fetch TSLA"]
    assert "no heartbeat for 30.0s" in h.sender.sent[1][2]
    assert ("send", f"{URL} [{h.destinations[0].key}]") in h.beats


@pytest.mark.parametrize("kind, fields, title", [
    ("flapping", {"worker": "macd"}, "macd is in a crash loop"),
    ("recovered", {"worker": "macd"}, "macd recovered from its crash loop"),
    ("escalated", {}, "escalated to systemd: the whole service restarts"),
    ("stopping", {}, "service stopping"),
    ("stopped", {}, "service stopped"),
])
def test_every_kind_of_supervisor_event_is_told(h, kind, fields, title):
    h.fake.journal.append(kind, f"text of {kind}", **fields)
    h.run_pass()
    assert h.sender.titles() == [f"[mdw@test] {title}"]
    assert h.sender.sent[0][2].startswith(f"text of {kind}")


def test_quarantined_and_released_items_are_told_from_the_status_rows(h):
    h.fake.status_rows = [row(quarantined=[])]
    h.run_pass()
    h.fake.status_rows = [row(quarantined=["TSLA"])]
    h.run_pass()
    h.fake.status_rows = [row()]  # restarting: no report from this incarnation yet
    h.run_pass()
    h.fake.status_rows = [row(quarantined=["TSLA"])]
    h.run_pass()
    h.fake.status_rows = [row(quarantined=[])]
    h.passes(12)
    assert h.sender.titles() == ["[mdw@test] TSLA quarantined (watchlist)", "[mdw@test] TSLA released (watchlist)"]
    assert "for 900s: the previous process hung on it" in h.sender.sent[0][2]


def test_an_item_missing_from_a_cut_listing_is_not_released(h):
    h.fake.status_rows = [row(quarantined=["A", "B"])]
    h.run_pass()
    h.fake.status_rows = [row(quarantined=["A"], total=2)]  # B is beyond the listed few, still quarantined
    h.passes(2)
    assert not [t for t in h.sender.titles() if "released" in t]


def test_a_stale_dataset_and_its_return_are_told(h):
    h.fake.limits = {"watchlist": 180.0}
    h.fake.dataset_updates = {"watchlist": {"age_s": 200.0, "stale": True}, "macd_scanner": None}
    h.passes(2)
    h.fake.dataset_updates = {"watchlist": {"age_s": 3.0, "stale": False}}
    h.passes(12)
    assert h.sender.titles() == ["[mdw@test] dataset watchlist is stale", "[mdw@test] dataset watchlist is fresh again"]
    assert "last written 200s ago (limit 180s)" in h.sender.sent[0][2]


def test_the_schwab_login_near_its_end_then_dead_is_told_once_each(h):
    expiring = "the Schwab refresh token expires in 1 day 4 h (2027-01-16 12:00 UTC): run mdw-schwab-login"
    h.fake.status_rows = [row(warnings=[expiring]), row("macd", warnings=[expiring])]
    h.passes(3)
    dead = "Schwab refused the refresh token (invalid_grant): it expired or was revoked; run mdw-schwab-login"
    h.fake.status_rows = [row(failing=f"last cycle failed: {dead}")]
    h.passes(12)
    assert h.sender.titles() == ["[mdw@test] the Schwab login expires soon: run mdw-schwab-login",
                                 "[mdw@test] the Schwab login is dead: run mdw-schwab-login"]
    assert "expires in 1 day 4 h" in h.sender.sent[0][2] and "invalid_grant" in h.sender.sent[1][2]
    h.fake.status_rows = [row()]  # a new login: quiet; the next expiry is told again
    h.run_pass()
    h.fake.status_rows = [row(warnings=[expiring])]
    h.passes(12)
    assert len(h.sender.sent) == 3


def test_a_switched_off_event_is_not_told(tmp_path):
    h = Harness(tmp_path, {"events": {"killed": False, "service": True}})
    h.fake.journal.append("killed", "x killed", worker="x", reason="hang")
    h.fake.journal.append("started", "mdwd started")
    h.run_pass()
    assert h.sender.titles() == ["[mdw@test] service started"]


def test_signals_are_told_only_as_asked_and_history_is_not_news(tmp_path):
    h = Harness(tmp_path, {"signals": {"macd_cross": {"enabled": True, "symbols": ["AAPL", "MSFT"],
                                                      "direction": "bullish"},
                                       "whale_flow": {"enabled": True, "min_score": 70}}})
    h.signal("macd_cross", "AAPL")  # recorded before the worker's first pass: history
    h.run_pass()
    h.signal("macd_cross", "AAPL", price=187.2, price_change_pct=1.2, macd=1.234, signal=1.1)
    h.signal("macd_cross", "MSFT", direction="bearish")
    h.signal("macd_cross", "NVDA")
    h.signal("ttm_fire", "AAPL")  # not enabled
    h.signal("whale_flow", "TSLA", score=65.0)
    h.run_pass()
    h.signal("whale_flow", "SPY", direction="bearish", score=88.0, type="PUT", strike=500, expiry="2027-01-22")
    h.passes(12)
    assert h.sender.titles() == ["[mdw@test] MACD bullish cross: AAPL", "[mdw@test] whale flow (bearish): SPY"]
    assert "at 187.20 (1.20 %): MACD 1.234" in h.sender.sent[0][2]
    assert "PUT 500 2027-01-22" in h.sender.sent[1][2] and "score 88" in h.sender.sent[1][2]


def test_a_signal_recorded_long_ago_is_not_told(tmp_path):
    h = Harness(tmp_path, {"signals": {"ttm_fire": {"enabled": True}}})
    h.run_pass()
    h.signal("ttm_fire", "AAPL")
    h.clock.t += 7200  # the worker was off for two hours
    h.run_pass()
    assert h.sender.sent == []


def test_thirty_signals_at_once_are_one_digest(tmp_path):
    h = Harness(tmp_path, {"signals": {"macd_cross": {"enabled": True}}})
    h.run_pass()
    symbols = [f"S{n:02d}" for n in range(30)]
    for symbol in symbols:
        h.signal("macd_cross", symbol)
    h.passes(3)
    assert len(h.sender.sent) == 1
    label, title, body = h.sender.sent[0]
    assert title == "[mdw@test] 30 signals"
    assert body == "MACD bullish cross on S00, S01, S02, S03, S04, S05, S06, S07, ... (+22 more) (30)"


def test_the_first_alert_goes_at_once_and_what_follows_within_the_pace_goes_as_one_digest(h):
    for n in range(10):  # one event a second
        h.fake.journal.append("killed", f"w{n} killed", worker=f"w{n}", reason="hang")
        h.run_pass()
    assert h.sender.titles() == ["[mdw@test] w0 killed: hang"]  # 6 a minute: the next one 10 s after it
    h.run_pass()
    assert h.sender.sent[1][1] == "[mdw@test] 9 events"
    assert [line.split(" ", 1)[1] for line in h.sender.sent[1][2].splitlines()] == [
        f"w{n} killed" for n in range(1, 10)]


def test_never_more_messages_a_minute_than_allowed_and_every_alert_delivered(h):
    sent_at = []
    for n in range(180):  # three minutes of an event a second
        h.fake.journal.append("killed", f"w{n} killed", worker=f"w{n}", reason="hang")
        before = len(h.sender.sent)
        h.run_pass()
        sent_at += [h.clock.t - 1] * (len(h.sender.sent) - before)
    h.passes(10)
    assert max(sum(1 for t in sent_at if start <= t < start + 60) for start in sent_at) == 6
    assert sum(len(re.findall(r"^\d\d:\d\d:\d\d w\d+ killed$", body, re.M)) or 1 for _, _, body in h.sender.sent) == 180


def test_a_failing_destination_is_retried_with_backoff_counted_and_warned_about(tmp_path):
    h = Harness(tmp_path, {"retry_initial": 10.0, "retry_max": 40.0}, urls=[f"{URL}/hook", f"{OTHER}/hook"])
    h.sender.failing[URL] = "Failed to send JSON notification: Internal Server Error - error 500"
    h.fake.journal.append("started", "mdwd started")
    tries = []
    for _ in range(120):
        before = h.outbox.counts()["failed"].get(h.destinations[0].key, 0)
        h.run_pass()
        if h.outbox.counts()["failed"].get(h.destinations[0].key, 0) > before:
            tries.append(h.clock.t - 1)
    assert [b - a for a, b in zip(tries, tries[1:])] == [10.0, 20.0, 40.0, 40.0]
    assert h.sender.titles(OTHER) == ["[mdw@test] service started"]  # the other destination is not held up
    counters = h.worker.counters()
    assert counters["alerts_failed"] == {URL: 5} and counters["alerts_pending"] == {URL: 1, OTHER: 0}
    assert counters["alerts_sent"] == {OTHER: 1}
    (warning,) = h.worker.warnings()
    assert warning.startswith(f"alerts to {URL} failing (5 sends in a row: Failed to send JSON notification")
    assert "1 waiting" in warning
    del h.sender.failing[URL]
    h.passes(41)
    assert h.sender.titles(URL) == ["[mdw@test] service started"]
    assert h.worker.warnings() == [] and h.worker.counters()["alerts_pending"][URL] == 0


def test_nothing_marked_sent_is_sent_again_after_a_restart(h):
    h.fake.journal.append("started", "mdwd started")
    h.run_pass()
    h.fake.journal.append("killed", "a killed", worker="a", reason="hang")
    h.passes(11)
    assert len(h.sender.sent) == 2
    h.restart()
    h.fake.journal.append("killed", "b killed", worker="b", reason="hang")
    h.passes(12)
    assert [t.split("] ")[1] for t in h.sender.titles()] == ["service started", "a killed: hang", "b killed: hang"]


def test_a_kill_between_the_send_and_its_mark_sends_it_again_once(h):
    h.fake.journal.append("started", "mdwd started")
    h.sender.crash_after_send = True
    with pytest.raises(SystemExit):
        h.run_pass()
    h.sender.crash_after_send = False
    h.restart()
    h.passes(3)
    assert h.sender.titles() == ["[mdw@test] service started"] * 2  # at least once: the mark was lost


def test_alerts_taken_in_but_not_sent_survive_a_restart(h):
    h.sender.failing[URL] = "down"
    h.fake.journal.append("started", "mdwd started")
    h.run_pass()
    h.restart()
    del h.sender.failing[URL]
    h.clock.t += 20  # past the backoff the successor inherits
    h.run_pass()
    assert h.sender.titles() == ["[mdw@test] service started"]


def test_a_successor_backs_off_from_the_destination_its_predecessor_hung_on(tmp_path):
    h = Harness(tmp_path, {"retry_initial": 10.0}, urls=[f"{URL}/hook", f"{OTHER}/hook"])
    hung = h.destinations[0]
    h.fake.journal.append("started", "mdwd started")
    h.restart(handed_over=Beat("send", hung.item, item_key(hung.item)))
    h.run_pass()
    assert h.sender.titles(OTHER) == ["[mdw@test] service started"] and h.sender.titles(URL) == []
    assert h.worker.counters()["alerts_failed"] == {URL: 1}
    h.passes(10)
    assert h.sender.titles(URL) == ["[mdw@test] service started"]


def test_failures_in_a_row_carry_over_to_the_successors_backoff(tmp_path):
    h = Harness(tmp_path, {"retry_initial": 10.0, "retry_max": 600.0})
    h.sender.failing[URL] = "down"
    h.fake.journal.append("started", "mdwd started")
    h.passes(31)  # tries at 0, 10, 30
    h.restart()
    del h.sender.failing[URL]
    h.passes(39)
    assert h.sender.sent == []  # 3 failures in a row: 40 s
    h.passes(2)
    assert len(h.sender.sent) == 1


def test_the_stop_is_told_whatever_the_rate_limit_says(h):
    h.fake.journal.append("killed", "w killed", worker="w", reason="hang")
    h.run_pass()
    h.fake.journal.append("stopping", "mdwd is stopping (SIGTERM)")
    h.fake.journal.append("stopped", "every worker has stopped")
    h.run_pass()
    assert len(h.sender.sent) == 1  # the next message is due 10 s after the first
    h.worker.take_in()
    h.worker.deliver(final=True)
    assert h.sender.sent[-1][1] == "[mdw@test] 2 events"


def test_a_destination_removed_from_the_config_drops_what_waited_for_it(tmp_path):
    h = Harness(tmp_path, urls=[f"{URL}/hook"])
    h.sender.failing[URL] = "down"
    h.fake.journal.append("started", "mdwd started")
    h.run_pass()
    assert h.outbox.forget_targets([]) == 1
    assert h.outbox.pending_counts() == {}


def test_more_than_the_bound_waiting_drops_the_oldest_and_counts_them(h, monkeypatch):
    monkeypatch.setattr(outbox_module, "MAX_PENDING", 5)
    h.sender.failing[URL] = "down"
    for n in range(8):
        h.fake.journal.append("killed", f"w{n} killed", worker=f"w{n}", reason="hang")
    h.run_pass()
    assert h.outbox.pending_counts() == {h.destinations[0].key: 5}
    assert h.worker.counters()["alerts_dropped"] == {URL: 3}


def test_an_unreachable_supervisor_or_store_fails_the_pass_but_delivery_goes_on(h):
    h.fake.journal.append("started", "mdwd started")
    h.sender.failing[URL] = "down"
    h.run_pass()
    del h.sender.failing[URL]
    h.clock.t += 10
    h.fake.control_down = True
    h.fake.store_down = True
    problems = h.run_pass()
    assert problems == ["cannot ask mdwd: cannot reach mdwd at /x/mdwd.sock: Connection refused; is mdwd running?",
                        "cannot read the store: read failed: database is locked"]
    assert h.sender.titles() == ["[mdw@test] service started"]
    h.fake.control_down = h.fake.store_down = False
    assert h.run_pass() == []


def test_a_supervisor_restart_is_read_from_its_first_event(h):
    h.fake.journal.append("started", "first boot")
    h.run_pass()
    from supervisor.events import EventJournal

    h.fake.journal = EventJournal(h.clock.wall, boot_id="boot2")
    h.fake.journal.append("started", "second boot")
    h.passes(12)
    assert [body.split("\n")[0] for _, _, body in h.sender.sent] == ["first boot", "second boot"]


def test_a_variable_not_set_is_a_warning_and_the_others_still_deliver(tmp_path):
    h = Harness(tmp_path, urls=[f"{URL}/hook", "${MDW_ALERT_DISCORD}"])
    h.fake.journal.append("started", "mdwd started")
    h.run_pass()
    assert h.sender.titles() == ["[mdw@test] service started"]
    assert h.worker.warnings() == ["alerts to ${MDW_ALERT_DISCORD}: MDW_ALERT_DISCORD is not set in the environment: "
                                   "put MDW_ALERT_DISCORD=<url> in the env file (/etc/market-data-worker/env) and "
                                   "restart the service"]
