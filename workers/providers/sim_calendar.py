"""The simulated market's NYSE calendar: holidays from a table for 2024-2027 (with the 2025-01-09
national day of mourning) and the exchange's rules for other years; trading-day indices since
EPOCH; weekly expirations (a holiday Friday moves to the trading day before).

The real providers' schedules use exchange_calendars (workers/market_hours.py); this one stays
self-contained so the simulated market is the same on every machine and in every year.
"""
from __future__ import annotations

import datetime as dt

import numpy as np

EPOCH = np.datetime64("2015-01-02", "D")

_TABLE = {
    2024: ("01-01", "01-15", "02-19", "03-29", "05-27", "06-19", "07-04", "09-02", "11-28",
           "12-25"),
    2025: ("01-01", "01-09", "01-20", "02-17", "04-18", "05-26", "06-19", "07-04", "09-01",
           "11-27", "12-25"),
    2026: ("01-01", "01-19", "02-16", "04-03", "05-25", "06-19", "07-03", "09-07", "11-26",
           "12-25"),
    2027: ("01-01", "01-18", "02-15", "03-26", "05-31", "06-18", "07-05", "09-06", "11-25",
           "12-24"),
}
HOLIDAY_TABLE = {year: tuple(dt.date.fromisoformat(f"{year}-{d}") for d in days)
                 for year, days in _TABLE.items()}


def _easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l_ = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * l_) // 451
    month, day = divmod(h + l_ - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _nth_weekday(year, month, weekday, n):
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _observed(day: dt.date) -> dt.date | None:
    if day.weekday() == 5:
        return day - dt.timedelta(days=1)
    return day + dt.timedelta(days=1) if day.weekday() == 6 else day


def holidays_by_rule(year: int) -> tuple[dt.date, ...]:
    """NYSE full-day holidays by the exchange's rules (no one-off closures)."""
    new_year = dt.date(year, 1, 1)
    days = [] if new_year.weekday() == 5 else [_observed(new_year)]  # Saturday: not observed
    days += [_nth_weekday(year, 1, 0, 3), _nth_weekday(year, 2, 0, 3),
             _easter(year) - dt.timedelta(days=2),
             dt.date(year, 5, 31) - dt.timedelta(days=dt.date(year, 5, 31).weekday())]
    if year >= 2022:
        days.append(_observed(dt.date(year, 6, 19)))
    days += [_observed(dt.date(year, 7, 4)), _nth_weekday(year, 9, 0, 1),
             _nth_weekday(year, 11, 3, 4), _observed(dt.date(year, 12, 25))]
    return tuple(sorted(days))


def nyse_holidays(year: int) -> tuple[dt.date, ...]:
    return HOLIDAY_TABLE.get(year) or holidays_by_rule(year)


_CALENDAR = np.busdaycalendar(holidays=[d for y in range(2000, 2081) for d in nyse_holidays(y)])


def is_trading_day(day: dt.date) -> bool:
    return bool(np.is_busday(np.datetime64(day, "D"), busdaycal=_CALENDAR))


def weekly_expirations(after: dt.date, count: int) -> list[dt.date]:
    """The next `count` weekly expirations strictly after `after`: Fridays, or the
    trading day before when the Friday is a holiday (Thursday in Good Friday week)."""
    friday = after + dt.timedelta(days=(4 - after.weekday()) % 7)
    out = []
    while len(out) < count:
        expiry = np.busday_offset(np.datetime64(friday, "D"), 0, roll="backward",
                                  busdaycal=_CALENDAR).astype(dt.date)
        if expiry > after:
            out.append(expiry)
        friday += dt.timedelta(days=7)
    return out


def day_index(day) -> int:
    """Trading days since EPOCH (for a non-trading day: the next trading day's index)."""
    return int(np.busday_count(EPOCH, np.datetime64(day, "D"), busdaycal=_CALENDAR))


def day_of(index: np.ndarray) -> np.ndarray:
    return np.busday_offset(EPOCH, index, roll="forward", busdaycal=_CALENDAR)
