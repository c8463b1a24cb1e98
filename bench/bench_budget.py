"""The default workers' upstream requests against Schwab's budget (120 a minute, shared).

Part 1, counted: every default worker that calls the provider or reads what
the others fetched (watchlist, whale_flows, macd, vpb, ttm, cycle_scanner,
market_structure; embedded defaults: 174 symbols, batches of 50, 25 whale
symbols x 4 expirations, SPY and QQQ x 5) runs its real cycles in-process
against the local fake Schwab, which counts every request, on a clock that
moves through an hour of a trading day: the watchlist every 60 s, the others
every 300 s. Requests per worker are counted for the first cycles (the cold
start) and for the hour after it (the steady state).

Baseline, counted the same way in the same run: the design before the bars
cache, i.e. what the scanners asked before: every technical cycle (the cycle
scanner's too) one price-history request per symbol, every whale cycle one
expiration list per symbol besides its chains, and a sentiment that fetched
its own chains (SPY and QQQ x 5 expirations a cycle) as the old service's did.

Part 2, simulated: each design's requests per cycle, replayed through the
shared token bucket of workers/providers/budget.py (120 a minute, burst 10)
second by second for two hours from a cold start: a cycle ends when its last
request got a token; each dataset's age (time since its last complete
write) is compared with its staleness limit (3 x its worker's interval).

Targets: steady state at most 50 % of 120 requests a minute; every dataset
younger than its limit throughout, with requests_per_minute = 120.
"""
import datetime as dt
import logging
import math
import os

from bench.common import work_dir

BUDGET, BURST = 120, 10
TARGET_SHARE = 0.50
INTERVALS = {"watchlist": 60, "whale_flows": 300, "macd": 300, "vpb": 300, "ttm": 300, "cycle_scanner": 300,
             "market_structure": 300}
TECHNICAL = ("macd", "vpb", "ttm", "cycle_scanner")
HOUR = 3600
ENDPOINT_WORKER = {"/marketdata/v1/quotes": "watchlist", "/marketdata/v1/chains": "whale_flows",
                   "/marketdata/v1/expirationchain": "whale_flows"}


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def scans(directory, fake, clock):
    """The default scanners on one store and one fake Schwab, each on `clock` (market_structure after
    whale_flows, whose chains it reads)."""
    from tests.schwab_fixture import schwab_against
    from tests.test_scanners import make_scan
    from workers import market_structure, technical, watchlist, whale_flows
    from workers.store import StoreWriter

    os.makedirs(directory, exist_ok=True)
    out = {}
    for name, scan_class in (("watchlist", watchlist.WatchlistScan), ("whale_flows", whale_flows.WhaleFlowsScan),
                             ("macd", technical.MacdScan), ("vpb", technical.VpbScan),
                             ("ttm", technical.TtmScan), ("cycle_scanner", technical.CycleScan),
                             ("market_structure", market_structure.MarketStructureScan)):
        provider = schwab_against(fake, directory, 10.0)
        provider._clock = clock  # the fake's market stands still; the store's day follows this clock
        scan, _ = make_scan(scan_class, name, directory, provider=provider)
        scan.store = StoreWriter(directory, now=clock)
        out[name] = scan
    return out


def count(fake, run):
    """The paths of the market-data requests made while `run()` runs (token refreshes left out)."""
    before = len(fake.requests)
    run()
    return [path for _, path, _ in fake.requests[before:] if path.startswith("/marketdata/")]


def new_design(directory, fake):
    """Requests per cycle of this code: (cold start cycle, steady cycles over an hour) per worker."""
    from tests.schwab_fixture import MARKET_TIME

    clock = Clock(MARKET_TIME - dt.timedelta(hours=1))
    workers = scans(directory, fake, clock)
    cold = {name: len(count(fake, scan.run_cycle)) for name, scan in workers.items()}
    steady = {name: 0 for name in workers}
    for second in range(INTERVALS["watchlist"], HOUR + 1, INTERVALS["watchlist"]):
        clock.now = MARKET_TIME - dt.timedelta(hours=1) + dt.timedelta(seconds=second)
        for name, scan in workers.items():
            if second % INTERVALS[name] == 0:
                steady[name] += len(count(fake, scan.run_cycle))
    return cold, steady


def old_design(directory, fake):
    """What the scanners asked before the cache, counted against the same fake: per cycle."""
    from tests.schwab_fixture import schwab_against
    from workers.universe import WATCHLIST, WHALE_SYMBOLS

    os.makedirs(directory, exist_ok=True)
    provider = schwab_against(fake, directory, 10.0)
    technical = len(count(fake, lambda: [provider.daily_bars(s, 365) for s in WATCHLIST]))
    whale = len(count(fake, lambda: [provider.option_chain(s, d, 10.0) for s in WHALE_SYMBOLS
                                     for d in provider.expirations(s, 4)]))
    sentiment = len(count(fake, lambda: [provider.option_chain(s, d, 10.0) for s in ("SPY", "QQQ")
                                         for d in provider.expirations(s, 5)]))
    quotes = len(count(fake, lambda: [provider.quotes(WATCHLIST[i:i + 50]) for i in range(0, len(WATCHLIST), 50)]))
    provider.close()
    per_cycle = {"watchlist": quotes, "whale_flows": whale, "macd": technical, "vpb": technical, "ttm": technical,
                 "cycle_scanner": technical, "market_structure": sentiment}
    steady = {name: per_cycle[name] * HOUR // INTERVALS[name] for name in per_cycle}
    return per_cycle, steady


def simulate(first, later, seconds=2 * HOUR):
    """Replay cycles through the shared bucket; return each worker's worst dataset age (s)."""
    rate = (BUDGET - BURST) / 60.0
    tokens, queue = float(BURST), []  # queue: [worker, requests left], in the order cycles started
    next_start = {name: 0.0 for name in INTERVALS}
    running, cycles, written, worst = {}, {n: 0 for n in INTERVALS}, {}, {n: 0.0 for n in INTERVALS}
    for t in range(seconds):
        for name in INTERVALS:
            if name not in running and t >= next_start[name]:
                need = first[name] if cycles[name] == 0 else later[name]
                running[name] = t
                queue.append([name, need])
        tokens = min(float(BURST), tokens + rate)
        while queue and (queue[0][1] == 0 or tokens >= 1.0):
            if queue[0][1] > 0:
                tokens -= 1.0
                queue[0][1] -= 1
            if queue[0][1] == 0:
                name = queue.pop(0)[0]
                written[name], cycles[name] = t, cycles[name] + 1
                next_start[name] = max(running.pop(name) + INTERVALS[name], t)
        for name in INTERVALS:  # a dataset's age, once it has been written the first time
            if name in written:
                worst[name] = max(worst[name], t - written[name])
    unwritten = [n for n in INTERVALS if n not in written]
    return worst, unwritten


def main(argv=None):
    from tests.fake_schwab import FakeSchwab

    logging.getLogger("scanner").setLevel(logging.ERROR)
    fake = FakeSchwab().start()  # in this process: it counts every request (timing is not measured here)
    try:
        with work_dir("budget") as directory:
            cold, steady = new_design(directory + "/new", fake)
            old_cycle, old_steady = old_design(directory + "/old", fake)
    finally:
        fake.stop()
    missed = False
    print("requests per minute in the steady state (one hour of cycles), per worker: this code | before the cache")
    for name in INTERVALS:
        print(f"  {name:<16} {steady[name] / 60:6.1f}/min | {old_steady[name] / 60:6.1f}/min")
    total, old_total = sum(steady.values()) / 60, sum(old_steady.values()) / 60
    share = total / BUDGET
    missed |= share > TARGET_SHARE
    print(f"  total            {total:6.1f}/min | {old_total:6.1f}/min   ({share:.0%} of {BUDGET} against {old_total / BUDGET:.0%};"
          f" ratio {total / old_total:.2f}; target <= {TARGET_SHARE:.0%}) [{'ok' if share <= TARGET_SHARE else 'MISSED'}]")
    print("cold start (each worker's first cycle), requests: " + ", ".join(f"{n} {cold[n]}" for n in INTERVALS)
          + f"; total {sum(cold.values())} (before the cache every cycle was a cold start: "
          f"{sum(old_cycle.values())})")
    later = {n: math.ceil(steady[n] / (HOUR // INTERVALS[n])) for n in INTERVALS}
    for label, first, per_cycle in (("this code", cold, later), ("before the cache", old_cycle, old_cycle)):
        worst, unwritten = simulate(first, per_cycle)
        rows = []
        for name in INTERVALS:
            limit = 3 * INTERVALS[name]
            ok = name not in unwritten and worst[name] <= limit
            rows.append(f"{name} {worst[name]:.0f}s/{limit}s{'' if ok else ' OVER'}")
            if label == "this code":
                missed |= not ok
        print(f"worst dataset age against its limit over 2 h at {BUDGET}/min, {label}: " + ", ".join(rows))
    print(f"targets (steady state <= {TARGET_SHARE:.0%} of the budget; every dataset within its limit): "
          + ("MISSED" if missed else "met"))
    return 1 if missed else 0
