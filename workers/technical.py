"""The technical scanners (MACD, volume-price breakout, TTM Squeeze): bars in, signals out.

Each is its own supervised worker. A cycle takes a year of daily bars per
symbol from the store's cache (a symbol's history is fetched at most once a
day, by whichever scanner gets to it first, beating before each request;
today's bar comes from the watchlist's quotes), aligns them into wide frames
(dates x symbols) and runs one vectorised scan over all symbols.
"""
import pandas as pd

from workers import scanner
from workers.bars import DailyBars
from workers.indicators import scan_macd, scan_ttm, scan_vpb
from workers.scanner import CycleFailed, Scan


class BarsScan(Scan):
    """Daily bars for every symbol, from the store's cache (fetched at most once a day, workers/bars.py);
    subclasses turn the wide frames into rows."""

    offset = 0.0  # where this scanner starts fetching, so three scanners share a cold start

    def __init__(self, *args):
        super().__init__(*args)
        self.daily_bars = DailyBars(self, int(self.options["days"]), self.offset)

    def cycle(self):
        symbols = list(self.options["symbols"])
        fetched_before = self.daily_bars.fetched
        bars, failed, skipped = self.daily_bars.frames(symbols)
        if not bars:
            self.check_provider()
            raise CycleFailed(f"no bars for any of {len(symbols)} symbols")
        self.ctx.beat("scan", self.dataset)
        wide = {field: pd.DataFrame({s: frame[field] for s, frame in bars.items()}).sort_index()
                for field in ("high", "low", "close", "volume")}
        rows = self.scan(wide).to_dict("records")
        session = wide["close"].index[-1].date()  # the bar the scan's signals are about
        stored = self.store_snapshot(rows, keep=set(symbols) - {row["symbol"] for row in rows}, session=session)
        return {"symbols": len(symbols), "fresh": len(rows), "stored": stored, "fetched": self.daily_bars.fetched
                - fetched_before, "failed": len(failed), "quarantined": len(skipped)}


class MacdScan(BarsScan):
    dataset = "macd_scanner"

    def scan(self, wide):
        return scan_macd(wide["close"])


class VpbScan(BarsScan):
    dataset = "vpb_scanner"
    offset = 1 / 3

    def scan(self, wide):
        return scan_vpb(wide["high"], wide["low"], wide["close"], wide["volume"])


class TtmScan(BarsScan):
    dataset = "ttm_squeeze_scanner"
    offset = 2 / 3

    def scan(self, wide):
        return scan_ttm(wide["high"], wide["low"], wide["close"])


def run_macd(ctx):
    scanner.run(ctx, MacdScan)


def run_vpb(ctx):
    scanner.run(ctx, VpbScan)


def run_ttm(ctx):
    scanner.run(ctx, TtmScan)
