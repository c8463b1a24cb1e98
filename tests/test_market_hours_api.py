"""The API on market hours: staleness counted inside the writer's schedule, and the market's state.

A fake mdwd serves status rows whose `reported.schedule` says the writer's
schedule; the store is written at fixed instants of Thanksgiving week 2026
(Friday 27 a half day closing 18:00 UTC, then a weekend), and the reader and
the app share one fixed clock.
"""
import datetime as dt

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.status import StatusSource, schedules
from supervisor.shared.control_client import ControlClient
from tests.api_support import get
from tests.fake_control import FakeControl, worker_row
from workers.store import StoreReader, StoreWriter


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


AFTER_THE_HALF_DAY = utc("2026-11-27 18:04")  # the whale scanner's cycle after the 13:00 close
SUNDAY = utc("2026-11-29 20:00")
MONDAY_OPEN = utc("2026-11-30 14:30")
QUOTE = {"symbol": "AAPL", "price": 180.0, "daily_change": 1.0, "daily_change_pct": 0.5, "volume": 5_000}


def scanner(name="watchlist", schedule="regular", **fields):
    """A watchlist worker's status row, reporting `schedule` (None: no schedule reported)."""
    fields = {"interval": 300.0, "startup_timeout": 30.0, "supervised_s": 10 * 86400.0,
              "reported": {"schedule": schedule} if schedule else {}, **fields}
    return worker_row(name, "watchlist", **fields)


@pytest.fixture
def ask(tmp_path):
    """ask(path, at, rows) -> the answer of an app at `at` over a store written at AFTER_THE_HALF_DAY."""
    store = tmp_path / "state"
    StoreWriter(store, now=lambda: AFTER_THE_HALF_DAY).replace_snapshot("watchlist", [QUOTE])
    with FakeControl(tmp_path / "mdwd.sock") as control:
        def answer(path, at, rows):
            control.rows[:] = rows
            status = StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0)
            return get(create_app(StoreReader(store, now=lambda: at), status, clock=lambda: at), path)
        yield answer


def test_a_dataset_from_before_the_weekend_is_not_stale_on_sunday_and_is_900s_into_monday(ask):
    rows = [scanner()]
    health = ask("/health", SUNDAY, rows)
    assert (health.status, health.json) == (200, {"status": "healthy"})
    entry = ask("/api/last_update", SUNDAY, rows).json["watchlist"]
    assert entry["stale"] is False and entry["age_s"] == (SUNDAY - AFTER_THE_HALF_DAY).total_seconds()
    assert ask("/health", MONDAY_OPEN + dt.timedelta(seconds=900), rows).status == 200
    late = ask("/health", MONDAY_OPEN + dt.timedelta(seconds=901), rows)
    assert late.status == 503 and late.json["problems"] == [
        f"dataset watchlist is stale: last written {(MONDAY_OPEN - AFTER_THE_HALF_DAY).total_seconds() + 901:.0f}s "
        "ago (limit 900s within its schedule, regular)"]


def test_extended_hours_count_the_half_days_after_hours(ask):
    rows = [scanner(schedule="extended")]
    # After the 13:00 close, after-hours runs to 17:00 New York: 14 and 16 minutes of it after the write.
    assert ask("/api/last_update", utc("2026-11-27 18:18"), rows).json["watchlist"]["stale"] is False
    assert ask("/api/last_update", utc("2026-11-27 18:20"), rows).json["watchlist"]["stale"] is True


def test_a_writer_that_says_no_schedule_has_every_moment_counted(ask):
    """An older worker, or none running to say it: as before market hours, every moment counts."""
    assert ask("/health", SUNDAY, [scanner(schedule=None)]).status == 503
    assert ask("/api/last_update", SUNDAY, []).json["watchlist"]["stale"] is True  # no writer: the fallback 900 s


def test_a_schedule_word_the_api_does_not_know_counts_every_moment():
    assert schedules([scanner(schedule="lunar")])["watchlist"].name == "always"


def test_where_two_workers_write_one_dataset_the_schedule_covering_more_counts():
    rows = [scanner(schedule="regular"), scanner("watchlist2", schedule="extended")]
    assert schedules(rows)["watchlist"].name == "extended"
    assert schedules(rows + [scanner("watchlist3", schedule=None)])["watchlist"].name == "always"
    assert schedules(rows)["macd_scanner"].name == "always"  # no writer


@pytest.mark.parametrize("after_open, problem", [(329, False), (331, True)])
def test_the_writers_grace_for_a_first_write_counts_from_the_open(tmp_path, after_open, problem):
    """startup_timeout + interval = 330 s, counted inside the writer's schedule: on Monday from 9:30."""
    StoreWriter(tmp_path / "empty").open().close()
    moment = MONDAY_OPEN + dt.timedelta(seconds=after_open)
    supervised = (moment - utc("2026-11-28 12:00")).total_seconds()  # since Saturday noon
    row = scanner(supervised_s=supervised)
    with FakeControl(tmp_path / "mdwd.sock", rows=[row]) as control:
        status = StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0)
        answer = get(create_app(StoreReader(tmp_path / "empty", now=lambda: moment), status, clock=lambda: moment),
                     "/health")
    expected = (f"dataset watchlist has never been written: its worker watchlist has been supervised for "
                f"{supervised:.0f}s (startup_timeout + interval 330s within its schedule, regular)")
    assert (answer.status, expected in answer.json.get("problems", [])) == ((503, True) if problem else (200, False))


@pytest.mark.parametrize("at, market", [
    (SUNDAY, {"open": False, "session": "closed", "next_open": "2026-11-30T14:30:00Z",
              "next_close": "2026-11-30T21:00:00Z"}),
    (utc("2026-11-27 15:00"), {"open": True, "session": "regular", "next_open": "2026-11-30T14:30:00Z",
                               "next_close": "2026-11-27T18:00:00Z"}),
    (utc("2026-11-26 12:00"), {"open": False, "session": "closed", "next_open": "2026-11-27T14:30:00Z",
                               "next_close": "2026-11-27T18:00:00Z"}),
])
def test_last_update_and_stats_say_whether_the_market_is_open_and_when_the_next_session_starts(ask, at, market):
    expected = {"calendar": "XNYS", **market}
    assert ask("/api/last_update", at, [scanner()]).json["market"] == expected
    stats = ask("/api/stats", at, [scanner()]).json["stats"]
    assert stats["market"] == expected and stats["watchlist_count"] == 1


def test_the_stale_metric_agrees_with_health_over_the_weekend(ask):
    def stale_gauge(at):
        text = ask("/metrics", at, [scanner()]).body.decode()
        family = next(f for f in text_string_to_metric_families(text) if f.name == "mdw_dataset_stale")
        return {s.labels["dataset"]: s.value for s in family.samples}["watchlist"]

    assert stale_gauge(SUNDAY) == 0.0
    assert stale_gauge(MONDAY_OPEN + dt.timedelta(seconds=901)) == 1.0
