"""Watchlist scanner: price, daily change and volume for every watchlist symbol.

Quotes are fetched in batches (one upstream request per `batch_size`
symbols), beating before each. A batch that hung a predecessor is split: its
symbols are fetched one by one, so a second hang names the one symbol to
quarantine instead of sidelining the whole batch.
"""
import logging

from workers import scanner
from workers.scanner import CycleFailed, Scan

log = logging.getLogger("watchlist")


def batches(symbols, size, quarantine):
    """Items to fetch: comma-joined batches, and the single symbols of a suspect batch."""
    items = []
    for start in range(0, len(symbols), size):
        batch = ",".join(symbols[start:start + size])
        items.extend(batch.split(",") if quarantine.holds(batch) else [batch])
    return items


class WatchlistScan(Scan):
    dataset = "watchlist"

    def cycle(self):
        symbols = list(self.options["symbols"])
        items = batches(symbols, int(self.options["batch_size"]), self.quarantine)
        results, errors, skipped = self.fetch_each(
            items, lambda item: self.provider.quotes(item.split(","), timeout=self.timeout))
        rows, failed = {}, set(skipped)
        for item, quotes in results.items():
            failed.update(quotes.errors)
            for symbol, quote in quotes.iterrows():
                rows[symbol] = {"symbol": symbol, "price": quote["price"], "daily_change": quote["daily_change"],
                                "daily_change_pct": quote["daily_change_pct"], "volume": int(quote["volume"])}
        for item in list(errors) + skipped:
            failed.update(item.split(","))
        if not rows:
            raise CycleFailed(f"no quote for any of {len(symbols)} symbols ({len(errors)} requests failed)")
        stored = self.store_snapshot(self.carry_over(rows, failed))
        return {"symbols": len(symbols), "fresh": len(rows), "stored": stored, "failed": len(failed - set(rows))}


def run(ctx):
    scanner.run(ctx, WatchlistScan)
