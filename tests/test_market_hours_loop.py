"""A scanner's loop through Thanksgiving week 2026 on a fake clock, watched by a real supervisor record.

`Week` drives workers/scanner.py `run_once` (the loop of every scanner) over
the simulated market with one fake clock for the calendar and the
supervisor: the worker's messages go through the heartbeat protocol into a
supervisor `Worker`, which is asked after every message and every idle beat
whether it would kill the worker (`staleness`: hung or stalled) or call it
failing. The API then reads what the loop stored, with the supervisor's own
status row for the worker, on the same clock.

Wednesday 25 is a full day, Thursday 26 Thanksgiving (closed), Friday 27 a
half day closing at 13:00 New York (18:00 UTC), then a weekend; New York is
UTC-5.
"""
import datetime as dt

import pytest

from api.app import create_app
from api.status import StatusSource
from supervisor import status as supervisor_status
from supervisor.shared import protocol
from supervisor.shared.control_client import ControlClient
from supervisor.worker import Worker
from tests import configs
from tests.api_support import get
from tests.fake_control import FakeControl
from tests.faulty_provider import FaultyProvider
from workers import market_hours, scanner, watchlist
from workers.market_hours import EXTENDED, REGULAR, schedule
from workers.providers.sim import SimProvider
from workers.quarantine import Quarantine
from workers.store import StoreReader, StoreWriter

SYMBOLS = ["AAPL", "MSFT", "TSLA"]
INTERVAL = 300.0


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


WEDNESDAY_MORNING = utc("2026-11-25 12:00")  # 7:00 New York
WEDNESDAY_CLOSE = utc("2026-11-25 21:00")
HALF_DAY_CLOSE = utc("2026-11-27 18:00")
MONDAY_OPEN = utc("2026-11-30 14:30")


class Recording(FaultyProvider):
    """The simulated market, every call recorded with the fake time it was made at."""

    def __init__(self, inner, clock):
        super().__init__(inner)
        self.clock = clock
        self.at = []

    def _check(self, method, symbols):
        self.at.append(self.clock())
        super()._check(method, symbols)


class Context:
    """What the scanner sees of its supervisor; every message goes through the protocol to `week.worker`."""

    def __init__(self, week, spec):
        self.week, self.spec, self.name = week, spec, spec.name
        self.interval, self.options, self.state_dir = spec.interval, dict(spec.options), spec.state_dir
        self.handed_over = None
        self.idle_beat_every = max(0.01, min(spec.interval, spec.heartbeat_timeout / 3))  # as WorkerContext

    def beat(self, phase, item=None):
        self.week.deliver(protocol.encode_beat(phase, item))

    def hung_on(self, phase, item):
        return False

    def cycle(self, ok, duration, counts=None, error=None):
        self.week.deliver(protocol.encode_cycle(ok, duration, counts, error))

    def report(self, quarantined=(), provider_requests=None, warnings=(), schedule=None):
        self.week.deliver(protocol.encode_status(quarantined, provider_requests, warnings, schedule))

    def idle(self, seconds, phase="idle"):
        left = seconds
        while True:
            self.beat(phase)
            if left <= 0:
                return
            step = min(left, self.idle_beat_every)
            self.week.advance(step)
            left -= step


class Week:
    """One scanner process and the supervisor's record of it, on one fake clock (wall and monotonic)."""

    def __init__(self, tmp_path, start=WEDNESDAY_MORNING, **options):
        self.wall, self.mono = start, 1000.0
        spec = configs.build({"watchlist": {"kind": "watchlist", "interval": INTERVAL, "symbols": SYMBOLS, **options}},
                             fast=False, state_dir=str(tmp_path)).workers["watchlist"]
        self.decoder = protocol.MessageDecoder()
        self.worker = Worker(spec, self.mono)
        self.worker.on_spawned(4242, self.mono)
        self.ctx = Context(self, spec)
        self.provider = Recording(SimProvider(seed=1, clock=self.clock), self.clock)
        self.quarantine = Quarantine(None)
        self.store = StoreWriter(tmp_path, now=self.clock)
        self.scan = watchlist.WatchlistScan(self.ctx, self.provider, self.store, self.quarantine)
        self.timetable = market_hours.Timetable(scanner.schedule_of(self.ctx), spec.interval, self.clock)
        scanner.report(self.ctx, self.scan, self.quarantine, self.timetable)  # as scanner.run does first

    def clock(self):
        return self.wall

    def deliver(self, data):
        for message in self.decoder.feed(data):
            self.worker.on_message(message, self.mono)
        self.check()

    def advance(self, seconds):
        self.wall += dt.timedelta(seconds=seconds)
        self.mono += seconds
        self.check()

    def check(self):
        """What the supervisor's loop asks: would it kill this worker, or call it failing?"""
        if self.worker.first_beat_at is None:
            return
        assert self.worker.staleness(self.mono) is None, (self.wall, self.worker.staleness(self.mono))
        assert self.worker.failing_reason(self.mono) is None, (self.wall, self.worker.failing_reason(self.mono))

    def run_until(self, end):
        while self.wall < end:
            scanner.run_once(self.ctx, self.scan, self.quarantine, self.timetable)

    def row(self):
        return supervisor_status.row(self.worker, self.mono)


def new_york(moment):
    return moment.astimezone(market_hours.NEW_YORK)


def test_regular_schedule_calls_upstream_only_in_sessions_and_once_after_each_close(tmp_path):
    week = Week(tmp_path, schedule="regular")
    week.run_until(utc("2026-11-30 15:00"))
    calls = week.provider.at
    after_close = [t for t in calls if not schedule(REGULAR).is_open(t)]
    assert [t for t in after_close if WEDNESDAY_CLOSE <= t < WEDNESDAY_CLOSE + dt.timedelta(seconds=INTERVAL)] \
        and [t for t in after_close if HALF_DAY_CLOSE <= t < HALF_DAY_CLOSE + dt.timedelta(seconds=INTERVAL)]
    assert len(after_close) == 2  # one cycle (one quotes request) after each close, no other
    days = {new_york(t).date().isoformat() for t in calls}
    assert days == {"2026-11-25", "2026-11-27", "2026-11-30"}  # not Thanksgiving, not the weekend
    friday = [new_york(t).time() for t in calls if new_york(t).date() == dt.date(2026, 11, 27)]
    assert min(friday) == dt.time(9, 30) and max(friday) < dt.time(13, 5)
    assert min(t for t in calls if t.date() == MONDAY_OPEN.date()) == MONDAY_OPEN  # woken at the open
    assert week.worker.cycles_failed == 0 and week.worker.restarts == 0
    assert week.row()["reported"]["schedule"] == "regular"


def test_extended_schedule_covers_pre_market_and_after_hours_and_nothing_after_them(tmp_path):
    week = Week(tmp_path, schedule="extended")
    week.run_until(utc("2026-11-30 10:00"))
    calls = week.provider.at
    assert all(schedule(EXTENDED).is_open(t) for t in calls)
    friday = [new_york(t).time() for t in calls if new_york(t).date() == dt.date(2026, 11, 27)]
    assert min(friday) == dt.time(4, 0) and max(friday) >= dt.time(16, 55) and max(friday) < dt.time(17, 0)
    wednesday = [new_york(t).time() for t in calls if new_york(t).date() == dt.date(2026, 11, 25)]
    assert min(wednesday) == dt.time(7, 0) and dt.time(19, 55) <= max(wednesday) < dt.time(20, 0)  # started at 7:00
    assert {new_york(t).date().isoformat() for t in calls} == {"2026-11-25", "2026-11-27", "2026-11-30"}
    monday = [new_york(t).time() for t in calls if new_york(t).date() == dt.date(2026, 11, 30)]
    assert min(monday) == dt.time(4, 0)


def test_the_simulated_market_runs_always_so_make_run_stores_data_on_a_sunday(tmp_path):
    sunday = utc("2026-11-29 18:00")
    week = Week(tmp_path, start=sunday)  # schedule auto, provider sim: always
    week.run_until(sunday + dt.timedelta(seconds=2.5 * INTERVAL))  # cycles at 0, 300 and 600 s, then idle
    assert len(week.provider.at) == 3 and week.timetable.schedule.name == "always"
    assert StoreReader(tmp_path, now=week.clock).last_update()["watchlist"]["age_s"] == pytest.approx(INTERVAL, abs=1)


def test_an_idle_worker_over_the_weekend_beats_reports_successful_empty_cycles_and_calls_nothing(tmp_path):
    saturday = utc("2026-11-28 00:00")
    week = Week(tmp_path, start=saturday, schedule="regular")
    week.run_until(saturday + dt.timedelta(days=2))  # Week.check: never stale, stalled, hung or failing
    assert week.provider.at == []
    row = week.row()
    assert row["healthy"] is True and row["failing"] is None
    assert row["last_cycle"]["counts"] == {"off_schedule": 1} and row["cycles_ok"] >= 2 * 86400 / INTERVAL
    assert row["phase"] == "off-schedule" and row["last_beat_age_s"] <= 10.0


def test_schwab_resolves_auto_to_the_regular_session_for_a_technical_scanner(tmp_path):
    tables = configs.tables({"macd": {"kind": "macd", "interval": 300.0}}, state_dir=str(tmp_path))
    tables["provider"] = {"kind": "schwab"}
    spec = configs.from_tables(tables, path="").workers["macd"]
    ctx = Context(None, spec)
    assert scanner.schedule_of(ctx).name == REGULAR
    tables["workers"]["watchlist"] = {"kind": "watchlist", "interval": 60.0}
    assert scanner.schedule_of(Context(None, configs.from_tables(tables, path="").workers["watchlist"])).name \
        == EXTENDED


# -- what the API says of it ------------------------------------------------------


@pytest.fixture
def api(tmp_path):
    """An app over the loop's store and a fake mdwd serving the supervisor's row for the worker, at `at`."""
    with FakeControl(tmp_path / "mdwd.sock") as control:
        def at(week, moment):
            control.rows[:] = [week.row()]
            reader = StoreReader(tmp_path / "store", now=lambda: moment)
            status = StatusSource(ControlClient(control.path, timeout=2.0), ttl=0.0)
            return create_app(reader, status, clock=lambda: moment)
        yield at


def test_no_503_over_the_holiday_and_the_weekend_while_the_data_ages(tmp_path, api):
    (tmp_path / "store").mkdir()
    week = Week(tmp_path / "store", schedule="regular")
    ages = []
    for moment in ("2026-11-25 21:30", "2026-11-26 17:00", "2026-11-27 12:00", "2026-11-27 15:00",
                   "2026-11-28 15:00", "2026-11-29 23:00", "2026-11-30 14:29:59"):
        week.run_until(utc(moment))
        app = api(week, week.wall)
        health = get(app, "/health")
        assert (health.status, health.json) == (200, {"status": "healthy"}), (moment, health.json)
        body = get(app, "/api/last_update").json
        assert body["watchlist"]["stale"] is False
        ages.append(body["watchlist"]["age_s"])
    assert max(ages) > 2 * 86400  # Friday's after-close cycle, seen on Monday morning
    assert body["market"] == {"calendar": "XNYS", "open": False, "session": "pre-market",
                              "next_open": "2026-11-30T14:30:00Z", "next_close": "2026-11-30T21:00:00Z"}
    # Monday's session counts: 900 s of it (3 intervals) without a write is stale.
    assert get(api(week, MONDAY_OPEN + dt.timedelta(seconds=899)), "/health").status == 200
    late = get(api(week, MONDAY_OPEN + dt.timedelta(seconds=901)), "/health")
    assert late.status == 503
    assert any(p.startswith("dataset watchlist is stale:") and p.endswith("(limit 900s within its schedule, regular)")
               for p in late.json["problems"]), late.json


def test_a_dataset_not_yet_written_over_the_weekend_is_no_problem_until_its_schedule_has_given_it_time(
        tmp_path, api):
    (tmp_path / "store").mkdir()
    week = Week(tmp_path / "store", start=utc("2026-11-28 12:00"), schedule="regular")  # first started on Saturday
    week.run_until(utc("2026-11-30 14:29"))
    assert StoreReader(tmp_path / "store").last_update()["watchlist"] is None
    assert get(api(week, week.wall), "/health").status == 200
