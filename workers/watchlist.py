"""Watchlist scanner: price, daily change and volume for every watchlist symbol.

Quotes are fetched in batches (one upstream request per `batch_size`
symbols), beating before each. A batch that fails as a whole is split and
its symbols are fetched one by one, whichever way it failed:

- it hung and the process was killed: the supervisor hands the batch (named
  exactly by its key) to the next process, which splits it at once;
- it ran into its deadline, trickled, or came back as an error: it is split
  in the same cycle.

Its symbols become suspects (workers/quarantine.py): they are fetched alone
until each has succeeded alone, so the one guilty symbol is found (a hang
hands it over and quarantines it; errors of its own quarantine it after
`quarantine_after` cycles) while every other symbol is quoted in the same
cycle. A batch failing for a provider-wide reason (the request budget, a
dead login) is not split: that would only multiply the requests.

Every quote also updates its symbol's daily bar of the session in the store
(open, high, low, last, volume), so the technical scanners need not fetch
bars again during the day (workers/store/market.py).
"""
import collections
import logging

from workers import scanner
from workers.outcomes import about_the_item
from workers.providers.base import BadPayload
from workers.scanner import FAILED, OK, CycleFailed, Scan
from workers.store import StoreError
from workers.store.market import MarketCache

log = logging.getLogger("watchlist")


def plan(symbols, size, quarantine):
    """What to fetch, in order: batches of `size` healthy symbols, then each suspect alone."""
    available = [s for s in symbols if not quarantine.holds(s)]
    healthy = [s for s in available if not quarantine.alone(s)]
    batches = [",".join(healthy[i:i + size]) for i in range(0, len(healthy), size)]
    return batches + [s for s in available if quarantine.alone(s)]


ROW_FIELDS = ("symbol", "price", "daily_change", "daily_change_pct", "volume")


class WatchlistScan(Scan):
    dataset = "watchlist"

    @property
    def bars(self):
        return MarketCache(self.store)

    def cycle(self):
        symbols = list(self.options["symbols"])
        queue = collections.deque(plan(symbols, int(self.options["batch_size"]), self.quarantine))
        rows = {}
        while queue:
            item = queue.popleft()
            members = item.split(",")
            batch = len(members) > 1
            if batch and self.ctx.hung_on("fetch", item):
                self.split(queue, members, "its batch hung the previous process (killed)")
                continue
            outcome, value = self.fetch_one("fetch", item, lambda: self.provider.quotes(members, timeout=self.timeout),
                                            own_item=not batch)
            if outcome is OK:
                rows.update(self.take(value, members))
            elif outcome is FAILED and batch and about_the_item(value):
                self.split(queue, members, f"its batch failed as a whole: {value}")
        if not rows:
            self.check_provider()
            raise CycleFailed(f"no quote for any of {len(symbols)} symbols")
        missed = set(symbols) - set(rows)  # failed, skipped or quarantined: their stored rows stay
        stored = self.store_snapshot([{k: r[k] for k in ROW_FIELDS} for r in rows.values()], keep=missed)
        return {"symbols": len(symbols), "fresh": len(rows), "stored": stored, "missed": len(missed),
                "quarantined": sum(self.quarantine.holds(s) for s in symbols), "bars_updated": self.update_bars(rows)}

    def update_bars(self, quotes):
        """Today's daily bar of every quoted symbol whose history is stored, for the technical scanners;
        returns how many were written. A store failure here costs the bars, not the cycle: the
        watchlist itself is stored."""
        try:
            return self.bars.update_session_bars(quotes)[0]
        except StoreError as e:
            log.warning("today's bars not updated from the quotes: %s", e)
            return 0

    def split(self, queue, members, why):
        log.warning("batch of %d symbols (%s...%s) will be fetched one by one: %s", len(members), members[0],
                    members[-1], why)
        self.quarantine.suspect(members, why)
        queue.extendleft(reversed(members))

    def take(self, quotes, members):
        """The rows of one answered request; a symbol missing from it is that symbol's own failure."""
        rows = {}
        for symbol, quote in quotes.iterrows():
            rows[symbol] = {"symbol": symbol, "price": quote["price"], "daily_change": quote["daily_change"],
                            "daily_change_pct": quote["daily_change_pct"], "volume": int(quote["volume"]),
                            "open": quote["open"], "high": quote["high"], "low": quote["low"],
                            "session_last": quote["session_last"], "session": quote["session"]}
        for symbol in members:
            if symbol not in rows:
                self.tally.record(symbol, BadPayload(quotes.errors.get(symbol, "no quote in the answer")),
                                  request=False)
            elif len(members) > 1:  # a single symbol's success was recorded with its request
                self.tally.record(symbol, request=False)
        return rows


def run(ctx):
    scanner.run(ctx, WatchlistScan)
