"""Daily bars for the technical scanners: from the store's cache, fetched at most once a day.

A technical cycle asks `DailyBars.frames(symbols)`. Symbols whose whole
history was fetched today (New York calendar date) come from the store;
the others are fetched now, one request each (beating before it, through
the scan's fetch_one, so hangs, failures and quarantine work as for any
item), and stored for the other scanners. Today's bar is kept current by
the watchlist from its quotes (workers/store/market.py).

Three technical scanners start together: each walks the symbols from a
different point (`offset`) and looks in the store again right before each
fetch, so on a cold start they share the work instead of each fetching
every symbol.
"""
from __future__ import annotations

import datetime as dt
import zoneinfo

from workers.scanner import OK
from workers.store.market import MarketCache

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def new_york_date(now: dt.datetime) -> str:
    return now.astimezone(NEW_YORK).date().isoformat()


class DailyBars:
    def __init__(self, scan, days: int, offset: float = 0.0):
        self.scan = scan
        self.days = days
        self.offset = offset  # where in the symbol list this scanner starts fetching (0..1)
        self.fetched = 0  # histories fetched by this process (for the cycle counts)

    @property
    def cache(self):
        return MarketCache(self.scan.store)

    def frames(self, symbols):
        """(symbol -> bars frame, failed symbols, quarantined symbols)."""
        scan = self.scan
        cache = self.cache
        today = new_york_date(scan.store._clock())
        cached = cache.fetched_today(symbols, today)
        start = int(len(symbols) * self.offset) % max(1, len(symbols))
        failed, skipped = [], []
        for symbol in symbols[start:] + symbols[:start]:
            if symbol in cached or (symbol in cache.fetched_today([symbol], today)):  # another scanner did
                continue
            outcome, value = scan.fetch_one("bars", symbol,
                                            lambda: scan.provider.daily_bars(symbol, self.days, timeout=scan.timeout))
            if outcome is OK:
                if len(value):
                    cache.replace_history(symbol, value, today, scan.store._clock())
                    self.fetched += 1
            elif scan.quarantine.holds(symbol):
                skipped.append(symbol)
            else:
                failed.append(symbol)
        frames = {s: f for s, f in cache.bars(symbols).items()
                  if len(f) and s not in failed and s not in skipped}
        return frames, failed, skipped
