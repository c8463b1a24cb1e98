"""The technical scanners (MACD, volume-price breakout, TTM Squeeze): bars in, signals out.

Each is its own supervised worker. A cycle fetches a year of daily bars per
symbol (beating before each request), aligns them into wide frames (dates x
symbols) and runs one vectorised scan over all symbols.
"""
import pandas as pd

from workers import scanner
from workers.indicators import scan_macd, scan_ttm, scan_vpb
from workers.scanner import CycleFailed, Scan


class BarsScan(Scan):
    """Fetch daily bars for every symbol; subclasses turn the wide frames into rows."""

    def cycle(self):
        symbols = list(self.options["symbols"])
        days = int(self.options["days"])
        bars, errors, skipped = self.fetch_each(
            symbols, lambda symbol: self.provider.daily_bars(symbol, days, timeout=self.timeout), phase="bars")
        bars = {s: frame for s, frame in bars.items() if len(frame)}
        if not bars:
            self.check_provider()
            raise CycleFailed(f"no bars for any of {len(symbols)} symbols")
        self.ctx.beat("scan", self.dataset)
        wide = {field: pd.DataFrame({s: frame[field] for s, frame in bars.items()}).sort_index()
                for field in ("high", "low", "close", "volume")}
        rows = self.scan(wide).to_dict("records")
        stored = self.store_snapshot(rows, keep=set(symbols) - {row["symbol"] for row in rows})
        return {"symbols": len(symbols), "fresh": len(rows), "stored": stored,
                "failed": len(errors), "quarantined": len(skipped)}


class MacdScan(BarsScan):
    dataset = "macd_scanner"

    def scan(self, wide):
        return scan_macd(wide["close"])


class VpbScan(BarsScan):
    dataset = "vpb_scanner"

    def scan(self, wide):
        return scan_vpb(wide["high"], wide["low"], wide["close"], wide["volume"])


class TtmScan(BarsScan):
    dataset = "ttm_squeeze_scanner"

    def scan(self, wide):
        return scan_ttm(wide["high"], wide["low"], wide["close"])


def run_macd(ctx):
    scanner.run(ctx, MacdScan)


def run_vpb(ctx):
    scanner.run(ctx, VpbScan)


def run_ttm(ctx):
    scanner.run(ctx, TtmScan)
