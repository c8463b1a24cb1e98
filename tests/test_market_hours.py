"""The schedules on the NYSE calendar: a weekend, a holiday, a half day, daylight saving, on fixed instants.

The week of 2026-11-23 has all of them: Thanksgiving (Thursday 26, closed),
the half day after it (Friday 27, closing at 13:00 New York, 18:00 UTC), and
a weekend. New York is UTC-5 then; in March 2026 daylight saving starts on
Sunday the 8th (UTC-4 from Monday the 9th).
"""
import datetime as dt

import pytest

from tests import configs
from workers import kinds, market_hours
from workers.market_hours import ALWAYS, EXTENDED, REGULAR, Timetable, market_state, resolve, schedule
from tests.clock import Clock


def utc(text):
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc)


WEDNESDAY_CLOSE = utc("2026-11-25 21:00")  # 16:00 New York
THANKSGIVING_NOON = utc("2026-11-26 17:00")
HALF_DAY_CLOSE = utc("2026-11-27 18:00")  # 13:00 New York
SATURDAY = utc("2026-11-28 15:00")
MONDAY_OPEN = utc("2026-11-30 14:30")


@pytest.mark.parametrize("moment, regular, extended", [
    ("2026-11-25 14:29:59", False, True),   # Wednesday 9:29:59 New York: pre-market
    ("2026-11-25 14:30", True, True),
    ("2026-11-25 20:59:59", True, True),
    ("2026-11-25 21:00", False, True),      # 16:00: after-hours
    ("2026-11-26 00:59:59", False, True),   # 19:59:59
    ("2026-11-26 01:00", False, False),     # 20:00: over
    ("2026-11-26 17:00", False, False),     # Thanksgiving
    ("2026-11-27 08:59", False, False),     # Friday 3:59 New York
    ("2026-11-27 09:00", False, True),      # 4:00: pre-market of the half day
    ("2026-11-27 17:59:59", True, True),
    ("2026-11-27 18:00", False, True),      # 13:00: the early close
    ("2026-11-27 21:59:59", False, True),   # after-hours end 4 h after it: 17:00
    ("2026-11-27 22:00", False, False),
    ("2026-11-28 15:00", False, False),     # Saturday
    ("2026-11-29 23:00", False, False),     # Sunday
    ("2026-11-30 09:00", False, True),      # Monday 4:00
    ("2026-03-09 08:00", False, True),      # Monday 4:00 New York in daylight saving time (UTC-4)
    ("2026-03-09 07:59", False, False),
    ("2026-03-09 13:30", True, True),       # 9:30 EDT
])
def test_regular_and_extended_hours_follow_the_nyse_calendar(moment, regular, extended):
    assert schedule(REGULAR).is_open(utc(moment)) is regular
    assert schedule(EXTENDED).is_open(utc(moment)) is extended
    assert schedule(ALWAYS).is_open(utc(moment)) is True


def test_the_next_session_skips_the_holiday_and_the_weekend():
    regular = schedule(REGULAR)
    assert regular.next_start(WEDNESDAY_CLOSE) == utc("2026-11-27 14:30")  # not Thanksgiving
    assert regular.next_start(HALF_DAY_CLOSE) == MONDAY_OPEN
    assert schedule(EXTENDED).next_start(SATURDAY) == utc("2026-11-30 09:00")
    assert regular.next_end(utc("2026-11-27 15:00")) == HALF_DAY_CLOSE
    assert schedule(ALWAYS).next_start(SATURDAY) is None


def test_time_inside_a_schedule_leaves_out_the_weekend_the_holiday_and_the_half_days_afternoon():
    regular, extended, always = schedule(REGULAR), schedule(EXTENDED), schedule(ALWAYS)
    # Wednesday's close to Monday 10:00 New York: the half day (9:30-13:00) and Monday's first half hour.
    assert regular.open_seconds(WEDNESDAY_CLOSE, utc("2026-11-30 15:00")) == 3.5 * 3600 + 1800
    # Wednesday's after-hours (4 h), Friday 4:00-17:00 (13 h), Monday 4:00-10:00 (6 h).
    assert extended.open_seconds(WEDNESDAY_CLOSE, utc("2026-11-30 15:00")) == 23 * 3600
    assert always.open_seconds(WEDNESDAY_CLOSE, utc("2026-11-30 15:00")) == (4 * 24 + 18) * 3600
    assert regular.open_seconds(HALF_DAY_CLOSE, MONDAY_OPEN) == 0.0
    assert regular.open_seconds(MONDAY_OPEN, HALF_DAY_CLOSE) == 0.0  # an empty span


def test_data_older_than_the_lookback_counts_whole_beyond_it():
    old = utc("2000-01-01 00:00")
    counted = schedule(REGULAR).open_seconds(old, MONDAY_OPEN)
    assert counted > (MONDAY_OPEN - old).total_seconds() - market_hours.LOOKBACK


def test_a_naive_datetime_is_refused_by_name():
    with pytest.raises(ValueError, match="needs an aware datetime"):
        schedule(REGULAR).is_open(dt.datetime(2026, 11, 27, 15, 0))


@pytest.mark.parametrize("moment, expected", [
    ("2026-11-25 15:00", {"open": True, "session": "regular", "next_open": "2026-11-27T14:30:00Z",
                          "next_close": "2026-11-25T21:00:00Z"}),
    ("2026-11-25 22:00", {"open": False, "session": "after-hours", "next_open": "2026-11-27T14:30:00Z",
                          "next_close": "2026-11-27T18:00:00Z"}),
    ("2026-11-26 17:00", {"open": False, "session": "closed", "next_open": "2026-11-27T14:30:00Z",
                          "next_close": "2026-11-27T18:00:00Z"}),
    ("2026-11-27 10:00", {"open": False, "session": "pre-market", "next_open": "2026-11-27T14:30:00Z",
                          "next_close": "2026-11-27T18:00:00Z"}),
    ("2026-11-28 15:00", {"open": False, "session": "closed", "next_open": "2026-11-30T14:30:00Z",
                          "next_close": "2026-11-30T21:00:00Z"}),
])
def test_market_state_says_the_session_and_when_the_next_one_opens(moment, expected):
    assert market_state(utc(moment)) == {"calendar": "XNYS", **expected}


# -- resolving a worker's schedule ------------------------------------------------


def test_the_embedded_defaults_run_every_scanner_always_on_the_simulated_market_and_by_the_market_on_schwab():
    defaults = configs.defaults()["workers"]
    scanners = {name: table["kind"] for name, table in defaults.items() if table["kind"] in kinds.MARKET_SCHEDULES}
    assert set(scanners.values()) == {"watchlist", "whale_flows", "macd", "vpb", "ttm", "cycle_scanner",
                                      "market_structure"}
    for name, kind in scanners.items():
        spec = configs.from_tables({}, path="").workers[name]
        assert spec.options["schedule"] == "auto"
        assert resolve(spec.options["schedule"], "sim", kinds.MARKET_SCHEDULES[kind]).name == ALWAYS
    on_schwab = {kind: resolve("auto", "schwab", kinds.MARKET_SCHEDULES[kind]).name for kind in scanners.values()}
    assert on_schwab == {"watchlist": EXTENDED, "whale_flows": REGULAR, "macd": REGULAR, "vpb": REGULAR,
                         "ttm": REGULAR, "cycle_scanner": REGULAR, "market_structure": REGULAR}


def test_an_explicit_schedule_wins_over_auto_and_the_kinds_spell_the_same_names():
    assert resolve(REGULAR, "sim", EXTENDED).name == REGULAR
    assert set(kinds.SCHEDULE_CHOICES) == set(market_hours.SCHEDULES) | {market_hours.AUTO}
    assert set(kinds.MARKET_SCHEDULES.values()) <= set(market_hours.SCHEDULES)


def test_a_bad_schedule_in_the_config_names_the_key_and_the_allowed_values():
    from supervisor.config import ConfigError

    with pytest.raises(ConfigError, match=r"workers\.w\.schedule = 'weekdays'.*one of auto, always, regular, extended"):
        configs.build({"w": {"kind": "macd", "interval": 60, "schedule": "weekdays"}})


# -- the timetable: when a worker runs a cycle -------------------------------------


def test_regular_runs_once_after_the_close_then_rests_until_the_next_open():
    clock = Clock(utc("2026-11-27 17:58"))
    timetable = Timetable(schedule(REGULAR), 300.0, clock)
    assert timetable.due() == "open"
    clock.now = utc("2026-11-27 18:03")  # the next cycle falls due after the early close
    assert timetable.due() == "after close"
    assert timetable.due() is None  # once only
    assert timetable.rest(300.0) == 300.0
    clock.now = utc("2026-11-30 14:28")
    assert timetable.rest(300.0) == 120.0  # cut at Monday's open
    clock.now = MONDAY_OPEN
    assert timetable.due() == "open"


def test_a_process_started_just_after_the_close_still_stores_it_and_one_started_later_does_not():
    clock = Clock(utc("2026-11-27 18:02"))
    assert Timetable(schedule(REGULAR), 300.0, clock).due() == "after close"
    clock.now = utc("2026-11-27 18:06")
    assert Timetable(schedule(REGULAR), 300.0, clock).due() is None


def test_a_cycle_that_ran_past_the_close_is_still_followed_by_the_one_after_it():
    clock = Clock(utc("2026-11-27 17:59:59"))
    timetable = Timetable(schedule(REGULAR), 300.0, clock)
    assert timetable.due() == "open"
    clock.now = utc("2026-11-27 18:10")  # a long cycle: more than an interval after the close
    assert timetable.due() == "after close"


def test_extended_hours_have_no_cycle_after_their_end():
    clock = Clock(utc("2026-11-27 21:59"))
    timetable = Timetable(schedule(EXTENDED), 60.0, clock)
    assert timetable.due() == "open"
    clock.now = utc("2026-11-27 22:00")
    assert timetable.due() is None


def test_always_is_always_due_and_never_cut():
    timetable = Timetable(schedule(ALWAYS), 60.0, Clock(SATURDAY))
    assert timetable.due() == "open" and timetable.rest(60.0) == 60.0
