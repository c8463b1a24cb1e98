"""Preloaded by mdwd in the Yahoo hang test: the real yfinance, over the fake Yahoo, some symbols never answering.

`[supervisor] preload = ["tests.yahoo_drill"]` makes mdwd import this module before it forks, so every
worker inherits a yfinance whose one HTTP seam (`YfData.get`) is the fake Yahoo's (tests/fake_yahoo.py): the
library and the yahoo provider run for real, nothing leaves the machine, and a request about a symbol named
in MDW_YAHOO_DRILL_HANG (comma-separated) never returns, as the 27-hour incident's call did.
"""
import datetime as dt
import os

from tests.fake_yahoo import FakeYahoo


class _SetAttr:
    """The one part of pytest's monkeypatch that FakeYahoo.install uses (nothing is undone: mdwd exits)."""

    @staticmethod
    def setattr(target, name, value):
        setattr(target, name, value)


FAKE = FakeYahoo(now=dt.datetime.now(dt.timezone.utc)).install(_SetAttr())
FAKE.faults.update((symbol, "hang") for symbol in os.environ.get("MDW_YAHOO_DRILL_HANG", "").split(",") if symbol)
