"""How long the incident takes to heal, on the real embedded defaults.

mdwd runs every default worker with the embedded defaults (heartbeat_timeout
30 s, backoff 1 s doubling, the default universe and batch sizes), with one
symbol hanging forever (`sim_hang_symbols`). For each scanner it measures,
from the tree's start, when the dataset holds a fresh row (written after the
hang) for every symbol but the hung one, the worker is RUNNING and healthy,
and the hung symbol is named as quarantined. Two runs: the hung symbol in
the first watchlist batch (TSLA, also a whale-flows symbol) and in the last
one (AEP, which whale flows does not scan: it must not notice).

Baseline, in the same run: the same tree without a hung symbol, the time to
each dataset's first complete write (process start plus one cycle).

Expected: a watchlist batch that hangs costs two kills (the batch, then the
symbol when the batch is fetched one by one); the other scanners fetch one
symbol per request and cost one. Target: healing within
kills x heartbeat_timeout + their backoffs (1 s, 2 s) + the baseline + 5 s
of slack for start-up, per scanner.
"""
import json
import os
import sqlite3
import time
import urllib.request

from bench.common import kill_tree, start_tree, work_dir

HEARTBEAT_TIMEOUT = 30.0
BACKOFFS = (1.0, 2.0)  # backoff_initial, doubled: the respawn delays after the first and second kill
SLACK = 5.0
DATASETS = {"watchlist": "watchlist", "whale_flows": "whale_flows", "macd": "macd_scanner",
            "vpb": "vpb_scanner", "ttm": "ttm_squeeze_scanner"}
TIMESTAMP = {"watchlist": "updated_at", "whale_flows": "detected_at"}
KILLS = {"watchlist": 2, "whale_flows": 1, "macd": 1, "vpb": 1, "ttm": 1}


def kills(name, hung):
    """The kills a hang of `hung` should cost worker `name` (none if it does not scan that symbol)."""
    from workers.universe import WATCHLIST, WHALE_SYMBOLS

    scanned = WHALE_SYMBOLS if name == "whale_flows" else WATCHLIST
    return KILLS[name] if hung in scanned else 0


def status(directory):
    from supervisor.shared.control_client import ControlClient, ControlError

    try:
        return {r["name"]: r for r in ControlClient(os.path.join(directory, "state", "mdwd.sock"),
                                                    timeout=2).call("status")["workers"]}
    except (ControlError, OSError, KeyError):
        return {}


def complete(directory, name, since, hung):
    """Has worker `name` written its whole dataset (but `hung`) after `since` (UTC text)?"""
    from workers.universe import WATCHLIST, WHALE_SYMBOLS

    dataset, column = DATASETS[name], TIMESTAMP.get(name, "scanned_at")
    path = os.path.join(directory, "state", "market_data.db")
    if not os.path.exists(path):
        return False
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            fresh = {s for (s,) in db.execute(f"SELECT DISTINCT symbol FROM {dataset} WHERE {column} >= ?", (since,))}
    except sqlite3.Error:
        return False
    wanted = set(WHALE_SYMBOLS if name == "whale_flows" else WATCHLIST) - {hung}
    if name == "whale_flows":  # flows are found only where trades were large: any fresh flow after the hang
        return bool(fresh) and hung not in fresh
    return wanted <= fresh


def run(directory, hung):
    import datetime as dt

    sections = {"api": {"port": 0}, **({"provider": {"sim_hang_symbols": [hung]}} if hung else {})}
    os.makedirs(directory, exist_ok=True)
    since = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    started = time.monotonic()
    proc = start_tree(directory, None, sections=sections)
    healed = {}
    try:
        while len(healed) < len(DATASETS) and time.monotonic() - started < 240:
            rows = status(directory)
            for name in DATASETS:
                if name in healed or name not in rows:
                    continue
                row = rows[name]
                quarantined = [q["item"] for q in (row.get("reported") or {}).get("quarantined", [])]
                expected = [hung] if hung and kills(name, hung) else []
                ok = row["state"] == "RUNNING" and row["healthy"] and quarantined == expected
                if ok and complete(directory, name, since, hung):
                    healed[name] = (time.monotonic() - started, row["restarts_by_reason"].get("hang", 0))
            time.sleep(0.2)
    finally:
        kill_tree(proc)
    return healed


def main(argv=None):
    with work_dir("healing") as directory:
        baseline = run(os.path.join(directory, "baseline"), None)
        print("baseline (no hang): first complete write after " +
              ", ".join(f"{n} {baseline[n][0]:.1f}s" for n in DATASETS if n in baseline))
        missed = len(baseline) < len(DATASETS)
        for hung in ("TSLA", "AEP"):
            healed = run(os.path.join(directory, hung), hung)
            for name in DATASETS:
                expected = kills(name, hung)
                limit = expected * HEARTBEAT_TIMEOUT + sum(BACKOFFS[:expected]) + baseline.get(name, (0,))[0] + SLACK
                if name not in healed:
                    print(f"{hung:>4} {name:<12} NOT HEALED within 240s (limit {limit:.0f}s)")
                    missed = True
                    continue
                took, hangs = healed[name]
                verdict = "ok" if took <= limit else "TARGET MISSED"
                missed |= took > limit
                missed |= hangs != expected
                print(f"{hung:>4} {name:<12} healed after {took:5.1f}s with {hangs} kill(s) "
                      f"(expected {expected}); limit {limit:.1f}s; ratio {took / limit:.2f} [{verdict}]")
    return 1 if missed else 0
