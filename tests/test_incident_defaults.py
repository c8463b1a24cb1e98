"""The incident, end to end, on the embedded defaults: every default worker, the default universe
(~170 symbols) and batch sizes, the simulated market, the API. Only the supervisor's timeouts are
short, so that two kills fit in seconds; the mechanism does not depend on them (bench_healing
measures the same with the real defaults).
"""
import json
import urllib.error
import urllib.request

import pytest

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll
from workers.store import StoreReader
from workers.universe import DEFAULT_UNIVERSE, WATCHLIST

pytestmark = pytest.mark.slow
HB = 3.0
TIMINGS = {"heartbeat_timeout": HB, "startup_timeout": 10.0, "backoff_initial": 0.5, "backoff_max": 5.0}


def statuses(tree):
    return {row["name"]: row for row in ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"]}


def health(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def quarantined(row):
    return [q["item"] for q in (row.get("reported") or {}).get("quarantined", [])]


def test_one_hung_symbol_on_the_defaults_heals_every_scanner(make_tree):
    """TSLA sits in the middle of the first watchlist batch of 50 (the batch whose display text is cut)."""
    tree = make_tree(None, {"provider": {"sim_hang_symbols": ["TSLA"]}, "api": {"port": 0}}, **TIMINGS).start()
    port = tree.api_port()
    tree.wait_log(r"watchlist: stopping pid \d+ \(hang: no heartbeat for [\d.]+s; last beat 'fetch SPY,QQQ,")
    hung_at = tree.wait_log(r"(\d\d:\d\d:\d\d) mdwd: WARNING watchlist: stopping pid").group(1)
    tree.wait_log(r"watchlist: WARNING watchlist: batch of 50 symbols \(SPY\.\.\.\w+\) will be fetched one by one")
    tree.wait_log(r"watchlist: stopping pid \d+ \(hang: no heartbeat for [\d.]+s; last beat 'fetch TSLA'\)")

    def healed():  # market_structure reads the store only: nothing of TSLA's to quarantine
        rows = {row["name"]: row for row in statuses(tree).values()}
        return all(r["state"] == "RUNNING" and r["healthy"]
                   and quarantined(r) == ([] if name == "market_structure" else ["TSLA"])
                   for name, r in rows.items() if name != "api") and rows

    # Two kills (2 x heartbeat_timeout), two backoffs (0.5 s, then ~1 s) and one cycle of every scanner.
    rows = poll(healed, 2 * HB + 2 + 20, interval=0.2, what=lambda: f"every scanner healed: {statuses(tree)}")
    reader = StoreReader(tree.state_dir)
    fresh = {r["symbol"] for r in reader.watchlist(order_by="symbol", limit=1000)}
    assert fresh == set(WATCHLIST) - {"TSLA"}, f"first hang at {hung_at}"
    assert {r["symbol"] for r in reader.macd(limit=1000)} == set(WATCHLIST) - {"TSLA"}
    assert rows["watchlist"]["restarts_by_reason"] == {"hang": 2}  # the batch, then TSLA alone
    assert all(rows[n]["restarts_by_reason"] == {"hang": 1}
               for n in ("whale_flows", "macd", "vpb", "ttm", "cycle_scanner"))
    code, body = poll(lambda: (answer := health(port))[0] == 200 and answer, 15, interval=0.2,
                      what=lambda: f"/health to turn healthy: {health(port)}")
    assert body == {"status": "healthy"}
    assert tree.stop() == 0


def test_provider_failing_every_call_makes_workers_unhealthy_and_quarantines_nothing(make_tree):
    sections = {"provider": {"sim_fail_symbols": list(DEFAULT_UNIVERSE)}, "api": {"port": 0},
                "workers": {"watchlist": {"interval": 5.0}}}
    tree = make_tree(None, sections, **{**TIMINGS, "startup_timeout": 5.0}).start()
    port = tree.api_port()
    tree.wait_log(r"watchlist: ERROR scanner: watchlist cycle failed: \d+ of \d+ requests failed the same way")

    def failing():  # market_structure makes no request: it waits for the chains whale_flows cannot store
        rows = statuses(tree)
        scanners = [r for name, r in rows.items() if name not in ("api", "market_structure")]
        return all(r["state"] == "RUNNING" and not r["healthy"] and "last cycle failed" in (r["failing"] or "")
                   for r in scanners) and rows

    rows = poll(failing, 30, interval=0.2, what=lambda: f"every scanner failing: {statuses(tree)}")
    assert all(quarantined(r) == [] for r in rows.values())
    assert "watchlist failing (last cycle failed:" in ControlClient(tree.state_dir / "mdwd.sock").call(
        "status")["supervisor"]["status"]
    code, body = poll(lambda: (a := health(port))[0] == 503 and any("never been written" in p for p in a[1]["problems"])
                      and a, 30, interval=0.5, what=lambda: f"/health naming the unwritten watchlist: {health(port)}")
    problems = "\n".join(body["problems"])
    assert "worker watchlist is not healthy: failing (last cycle failed:" in problems
    assert "dataset watchlist has never been written" in problems
    for name in ("watchlist", "macd"):
        file = tree.state_dir / f"quarantine-{name}.json"
        assert not file.exists() or json.loads(file.read_text())["entries"] == {}
    assert tree.stop() == 0
