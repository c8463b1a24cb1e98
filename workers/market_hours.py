"""When the US stock market trades, and so when each scanner works (issue 9, "Market hours").

The calendar is the NYSE's (XNYS) as the exchange_calendars package knows it:
its holidays and half days, never a table written here. Everything in this
module answers calendar questions about wall-clock instants (aware
datetimes, any zone; answers in UTC). How long a worker waits between
cycles stays on the caller's monotonic clock: only where a wait meets the
calendar (the next open) is it cut by a wall-clock difference, and never
beyond one interval, so a clock step costs at most one interval.

The schedules (a scanner's `schedule` option, see workers/kinds.py):

    always     every moment: the default on the simulated market, so `make run` works on a Sunday
    regular    each trading day's regular session, 9:30 to 16:00 New York (13:00 on a half
               day), plus one cycle after the close, so that the closing prices are stored
    extended   each trading day from the pre-market at 4:00 to the end of after-hours at
               20:00 New York; after-hours ends 4 h after the close, so 17:00 on a half day
    auto       (resolved by `resolve`) always on the simulated market; on a real one the
               kind's own: extended for the watchlist, regular for the others

The one cycle after the close is the first one due after a window ends, when
the process ran a cycle inside that window or the close is less than one
interval ago (a successor started just after the close still stores it).

Each side uses what it needs:
- a worker, `Timetable`: run a cycle now (inside its schedule) or not, and
  how long to idle when not (until the next window opens, at most an interval);
- the API, `Schedule.open_seconds(start, end)`: how much of a span lies
  inside a schedule, so that a dataset's age (and a writer's grace before
  its first write) counts only time its writer was meant to work: a weekend
  or a holiday never makes data stale;
- the API, `market_state(now)`: is the market open, which session it is in,
  and when the next regular session opens and closes (ISO 8601, "Z").

Years outside FIRST_YEAR..LAST_YEAR have no sessions (a clock that far off is
wrong, and the calendar cannot say). A span longer than LOOKBACK counts its
part older than that as inside the schedule: such data is stale anyway.
"""
from __future__ import annotations

import bisect
import datetime as dt
import functools
import logging
import warnings
from typing import NamedTuple, Optional
from zoneinfo import ZoneInfo

import exchange_calendars

__all__ = ["ALWAYS", "REGULAR", "EXTENDED", "AUTO", "SCHEDULES", "Schedule", "Timetable",
           "schedule", "resolve", "market_state", "utc_now", "iso"]

log = logging.getLogger("schedule")

CALENDAR = "XNYS"
NEW_YORK = ZoneInfo("America/New_York")  # the exchange's zone
ALWAYS, REGULAR, EXTENDED, AUTO = "always", "regular", "extended", "auto"
SCHEDULES = (ALWAYS, REGULAR, EXTENDED)
PRE_MARKET_OPENS = dt.time(4, 0)  # New York
AFTER_HOURS = dt.timedelta(hours=4)  # after the close: 20:00 New York, 17:00 on a half day
FIRST_YEAR, LAST_YEAR = 1990, 2200
BLOCK_YEARS = 8  # years of sessions read from the calendar at once
LOOKBACK = 400 * 86400.0  # seconds of calendar a span is counted over; older is counted whole
SIMULATED_PROVIDER = "sim"

# exchange_calendars 4.13 reads tz-aware columns with Series.values, which pandas 3.1 deprecates
# on every calendar it builds: a warning about the library, not about us, silenced by its text.
warnings.filterwarnings("ignore", message="Series.values returning an ndarray that drops timezone",
                        category=DeprecationWarning)


def utc_now() -> dt.datetime:
    """The wall clock, for calendar questions only."""
    return dt.datetime.now(dt.timezone.utc)


def iso(moment: Optional[dt.datetime]) -> Optional[str]:
    """'2026-11-30T14:30:00Z' (UTC, whole seconds), or None."""
    if moment is None:
        return None
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _seconds(moment: dt.datetime) -> float:
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a calendar question needs an aware datetime, got {moment!r}")
    return moment.timestamp()


def _moment(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


# -- the calendar ------------------------------------------------------------------


class Session(NamedTuple):
    """One trading day, as POSIX seconds."""

    day: dt.date
    pre: float  # pre-market opens, 4:00 New York
    open: float
    close: float  # 16:00 New York, 13:00 on a half day
    post: float  # after-hours ends, AFTER_HOURS after the close


def sessions_of(year: int) -> tuple[Session, ...]:
    """The NYSE trading days of `year`, in order (none outside FIRST_YEAR..LAST_YEAR)."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        return ()
    return _block(year - year % BLOCK_YEARS).get(year, ())


@functools.lru_cache(maxsize=None)
def _block(first: int) -> dict[int, tuple[Session, ...]]:
    """The sessions of BLOCK_YEARS years from `first`, by year: one calendar built (about 0.1 s
    whatever its span), so a process builds one or two in its life."""
    calendar = exchange_calendars.get_calendar(CALENDAR, start=f"{first}-01-01",
                                               end=f"{first + BLOCK_YEARS - 1}-12-31")
    years: dict[int, list] = {}
    for day, opens, closes in zip(calendar.schedule.index, calendar.schedule["open"], calendar.schedule["close"]):
        date = day.date()
        pre = dt.datetime.combine(date, PRE_MARKET_OPENS, tzinfo=NEW_YORK)
        close = closes.to_pydatetime()
        years.setdefault(date.year, []).append(
            Session(date, pre.timestamp(), opens.to_pydatetime().timestamp(), close.timestamp(),
                    (close + AFTER_HOURS).timestamp()))
    return {year: tuple(sessions) for year, sessions in years.items()}


# -- schedules ---------------------------------------------------------------------


class Schedule:
    """The windows of one schedule: from a session's `start` field to its `end` field."""

    def __init__(self, name: str, start: str, end: str, after_close: bool):
        self.name, self._start, self._end, self.after_close = name, start, end, after_close

    def __repr__(self):
        return f"Schedule({self.name!r})"

    @functools.lru_cache(maxsize=None)
    def _year(self, year: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(starts, ends) of the windows of the sessions of `year`."""
        sessions = sessions_of(year)
        return (tuple(getattr(s, self._start) for s in sessions), tuple(getattr(s, self._end) for s in sessions))

    def _windows(self, first: float, last: float):
        """The windows that end after `first` and start before `last`, in order."""
        # A session's windows lie within its UTC year, except the after-hours of Dec 31 (into Jan 1).
        for year in range(_moment(first).year - 1, _moment(last).year + 1):
            starts, ends = self._year(year)
            for i in range(bisect.bisect_right(ends, first), len(starts)):
                if starts[i] >= last:
                    break
                yield starts[i], ends[i]

    def window_at(self, moment: dt.datetime) -> Optional[tuple[float, float]]:
        """The window open at `moment` ([start, end) in POSIX seconds), or None."""
        t = _seconds(moment)
        for start, end in self._windows(t, t + 1e-6):
            if start <= t < end:
                return start, end
        return None

    def is_open(self, moment: dt.datetime) -> bool:
        return self.window_at(moment) is not None

    def next_start(self, moment: dt.datetime) -> Optional[dt.datetime]:
        """When the first window starting after `moment` opens (None: not within 3 years)."""
        t = _seconds(moment)
        for year in range(_moment(t).year, _moment(t).year + 3):
            starts, _ = self._year(year)
            i = bisect.bisect_right(starts, t)
            if i < len(starts):
                return _moment(starts[i])
        return None

    def next_end(self, moment: dt.datetime) -> Optional[dt.datetime]:
        """When the window open at `moment` closes, or else the next one."""
        window = self.window_at(moment)
        if window is not None:
            return _moment(window[1])
        start = self.next_start(moment)
        return None if start is None else _moment(self.window_at(start)[1])

    def last_end(self, moment: dt.datetime) -> Optional[float]:
        """The end (POSIX seconds) of the latest window closed at or before `moment`, or None."""
        t = _seconds(moment)
        for year in range(_moment(t).year, _moment(t).year - 3, -1):
            _, ends = self._year(year)
            i = bisect.bisect_right(ends, t)
            if i:
                return ends[i - 1]
        return None

    def open_seconds(self, start: dt.datetime, end: dt.datetime) -> float:
        """Seconds of [start, end) inside this schedule (see LOOKBACK for long spans)."""
        a, b = _seconds(start), _seconds(end)
        if b <= a:
            return 0.0
        older = max(0.0, (b - LOOKBACK) - a)
        a += older
        return older + sum(min(b, e) - max(a, s) for s, e in self._windows(a, b))


class _Always(Schedule):
    """Every moment is inside."""

    def __init__(self):
        super().__init__(ALWAYS, "", "", after_close=False)

    def window_at(self, moment):
        _seconds(moment)  # the same error as the others for a naive datetime
        return float("-inf"), float("inf")

    def next_start(self, moment):
        return None

    def next_end(self, moment):
        return None

    def last_end(self, moment):
        return None

    def open_seconds(self, start, end):
        return max(0.0, _seconds(end) - _seconds(start))


_SCHEDULES = {
    ALWAYS: _Always(),
    REGULAR: Schedule(REGULAR, "open", "close", after_close=True),
    EXTENDED: Schedule(EXTENDED, "pre", "post", after_close=False),
}


def schedule(name: str) -> Schedule:
    """The schedule called `name` (one of SCHEDULES); ValueError naming the allowed ones."""
    try:
        return _SCHEDULES[name]
    except (KeyError, TypeError):
        raise ValueError(f"schedule {name!r}: allowed are {', '.join(SCHEDULES)} (or {AUTO})") from None


def resolve(choice: str, provider_kind: str, market_default: str) -> Schedule:
    """A worker's schedule: `choice`, or for "auto" always on the simulated market and
    `market_default` (the kind's own) on a real one."""
    if choice == AUTO:
        choice = ALWAYS if provider_kind == SIMULATED_PROVIDER else market_default
    return schedule(choice)


# -- a worker's side -----------------------------------------------------------------


class Timetable:
    """Whether a worker on `schedule` runs a cycle now, and how long it idles when it does not.

    `clock` returns an aware datetime (the wall clock: market_hours.utc_now)."""

    def __init__(self, schedule: Schedule, interval: float, clock):
        self.schedule = schedule
        self.interval = float(interval)
        self._clock = clock
        self._ran_in = None  # end of the window in which this process last ran a cycle
        self._closing_run = None  # end of the window whose run after the close was made
        self._resting = None  # True while off schedule (for the log lines at the changes)

    def due(self) -> Optional[str]:
        """"open" (inside a window), "after close" (the one cycle after it), or None: rest."""
        now = self._clock()
        window = self.schedule.window_at(now)
        if window is not None:
            self._ran_in = window[1]
            self._changed(resting=False, now=now)
            return "open"
        end = self.schedule.last_end(now) if self.schedule.after_close else None
        if end is not None and end != self._closing_run and (
                self._ran_in == end or _seconds(now) < end + self.interval):
            self._closing_run = end
            log.info("one cycle after the close of %s (schedule %s)", _new_york(_moment(end)), self.schedule.name)
            return "after close"
        self._changed(resting=True, now=now)
        return None

    def rest(self, seconds: float) -> float:
        """How long to idle off schedule: `seconds`, cut at the next window's start."""
        now = self._clock()
        start = self.schedule.next_start(now)
        if start is None:
            return max(0.0, seconds)
        return max(0.0, min(seconds, (start - now).total_seconds()))

    def _changed(self, resting: bool, now: dt.datetime) -> None:
        if resting == self._resting:
            return
        self._resting = resting
        if resting:
            start = self.schedule.next_start(now)
            log.info("off schedule (%s) until %s: idling, beating, no upstream calls", self.schedule.name,
                     f"{_new_york(start)} ({iso(start)})" if start else "further notice")
        elif self.schedule.name != ALWAYS:
            log.info("schedule %s open: cycles run", self.schedule.name)


def _new_york(moment: dt.datetime) -> str:
    return moment.astimezone(NEW_YORK).strftime("%a %Y-%m-%d %H:%M New York")


# -- the API's side --------------------------------------------------------------------


def market_state(now: dt.datetime) -> dict:
    """{"calendar", "open", "session", "next_open", "next_close"}: whether the regular session
    is open, which session it is ("pre-market", "regular", "after-hours", "closed"), when the
    next regular session opens (after `now`) and when the current or next one closes."""
    regular, extended = _SCHEDULES[REGULAR], _SCHEDULES[EXTENDED]
    is_open = regular.is_open(now)
    session = "regular" if is_open else "closed"
    if not is_open and (window := extended.window_at(now)) is not None:
        upcoming = regular.next_start(now)
        session = "pre-market" if upcoming is not None and _seconds(upcoming) < window[1] else "after-hours"
    return {"calendar": CALENDAR, "open": is_open, "session": session,
            "next_open": iso(regular.next_start(now)), "next_close": iso(regular.next_end(now))}
