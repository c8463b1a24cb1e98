"""A scanner whose upstream trickles forever for one of 30 symbols.

The MACD scanner runs 50 cycles over 30 symbols against a local fake Schwab
(in a process of its own) that answers one symbol's price history one byte every 0.2 s, forever. The
breaker and quarantine are set so they never step in: every cycle pays the
deadline, the worst case; and each cycle is on a new day, so each fetches
every history (the bars cache would otherwise serve 29 of them). Baseline:
the same scanner's normal cycle (no fault), measured first in the same run.

Targets: every cycle stores all 29 other symbols; the typical (p50) cycle
takes the per-request deadline plus the typical normal cycle, and no more
(within 2 %: the failure path drops the stuck connection and the next
request opens a new one, a few milliseconds); no growth in threads or fds. The p99s are printed too: the fake server
shares this process and the machine, so the tails of both are noisy.
"""
import datetime as dt
import logging
import os
import sys
import threading
import time

from bench.common import describe, percentile, work_dir

CYCLES = 50
DEADLINE = 0.5
HUNG = "TSLA"
TOLERANCE = 1.02  # the reconnect after a dropped connection


def open_fds():
    return len(os.listdir("/proc/self/fd"))


def main(argv=None):
    from bench.fake_upstream import RemoteFakeSchwab
    from tests.schwab_fixture import MARKET_TIME, schwab_against
    from tests.test_scanners import make_scan
    from workers import technical
    from workers.quarantine import Quarantine
    from workers.store import StoreReader, StoreWriter
    from workers.universe import WATCHLIST

    cycles = int((argv or [None])[0] or CYCLES)
    symbols = [s for s in WATCHLIST[:30]]
    if HUNG not in symbols:
        symbols[-1] = HUNG
    fake = RemoteFakeSchwab()  # out of process: a real upstream does not share our GIL
    try:
        with work_dir("hung-upstream") as directory:
            provider = schwab_against(fake, directory, DEADLINE, breaker_failures=10**6)
            scan, _ = make_scan(technical.MacdScan, "macd", directory, provider=provider, symbols=symbols,
                                quarantine=Quarantine(None, after_failures=0))  # never steps in
            day = [0]  # every cycle is a new day, so every cycle fetches every history: the worst case
            scan.store = StoreWriter(directory, now=lambda: MARKET_TIME + dt.timedelta(days=day[0]))
            scan.timeout = DEADLINE
            normal = []
            logging.getLogger("scanner").setLevel(logging.ERROR)  # one warning per cycle otherwise
            for _ in range(3):  # warm the fake server's caches, so the baseline is not inflated
                day[0] += 1
                scan.run_cycle()
            for _ in range(cycles):  # as many normal cycles as faulty ones: the same statistics on both
                day[0] += 1
                started = time.monotonic()
                scan.run_cycle()
                normal.append(time.monotonic() - started)
            fake.misbehave("/marketdata/v1/pricehistory", "trickle", symbol=HUNG, interval=0.2)
            times, stored, fresh = [], [], []
            baseline_threads = baseline_fds = None
            for i in range(cycles):
                day[0] += 1
                started = time.monotonic()
                counts = scan.run_cycle()
                times.append(time.monotonic() - started)
                fresh.append(counts["fresh"])
                stored.append(len(StoreReader(directory).macd(limit=1000)))
                if i == 4:
                    baseline_threads, baseline_fds = threading.active_count(), open_fds()
            end_threads, end_fds = threading.active_count(), open_fds()
            provider.close()
    finally:
        fake.stop()
    print(f"{len(symbols)} symbols, {HUNG} trickles 1 byte / 0.2 s forever; per-request deadline {DEADLINE}s")
    print(f"normal cycle (no fault): {describe(normal)}")
    print(f"cycles with the hung symbol: {describe(times)}")
    print(f"cycles that waited for the deadline: {sum(t >= DEADLINE for t in times)} of {len(times)}")
    print(f"fresh symbols per cycle: min {min(fresh)} max {max(fresh)} (29 expected); rows served: min {min(stored)}")
    print(f"threads after cycle 5 / after cycle {cycles}: {baseline_threads} / {end_threads}; "
          f"open fds: {baseline_fds} / {end_fds}")
    met = min(fresh) == 29 and end_threads <= baseline_threads and end_fds <= baseline_fds
    for p in (50, 99):
        got, bound = percentile(times, p), percentile(normal, p) + DEADLINE
        print(f"p{p} cycle {got:.3f}s vs deadline + normal p{p} {bound:.3f}s: ratio {got / bound:.2f}"
              + ("" if p == 50 else " (information)"))
        met = met and (got <= bound * TOLERANCE or p != 50)
    print(f"targets (29 stored every cycle, cycle <= deadline + normal, no thread/fd growth): "
          f"{'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
