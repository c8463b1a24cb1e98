"""A preload module for real trees: the market calendar's clock of the whole tree starts at MDW_TEST_MARKET_NOW.

`[supervisor] preload = ["tests.market_hours_clock"]` (with the checkout on
PYTHONPATH) has mdwd import this before it forks, so every worker and the
API's serving processes ask the calendar (workers/market_hours.py
`utc_now`) at that moment, moving at the real pace from the import on. The
store's timestamps, and every duration, stay on the real clocks.
"""
import datetime as dt
import os
import time

from workers import market_hours

START = dt.datetime.fromisoformat(os.environ["MDW_TEST_MARKET_NOW"])
_IMPORTED_AT = time.monotonic()


def fake_now():
    return START + dt.timedelta(seconds=time.monotonic() - _IMPORTED_AT)


market_hours.utc_now = fake_now
