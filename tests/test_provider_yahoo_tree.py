"""A yahoo call that never returns, under a real supervisor: its worker is killed and the symbol quarantined.

yfinance offers no total deadline for a call (workers/providers/yahoo.py), so the supervisor's hang kill is
what bounds one. The tree runs the watchlist on kind = "yahoo" with the real yfinance over the fake Yahoo
(preloaded by mdwd: tests/yahoo_drill.py), whose request for TSLA never returns.
"""
from pathlib import Path

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll
from workers.store import StoreReader

ROOT = str(Path(__file__).resolve().parent.parent)
SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA"]


def test_a_yahoo_call_that_never_returns_is_killed_and_its_symbol_quarantined_by_the_successor(make_tree):
    tree = make_tree(
        {"watchlist": {"kind": "watchlist", "interval": 0.5, "batch_size": 1, "symbols": SYMBOLS,
                       "schedule": "always"}},
        sections={"provider": {"kind": "yahoo", "requests_per_minute": 6000}},
        heartbeat_timeout=1.5, backoff_initial=0.1, stale_cycles=10, preload=["tests.yahoo_drill"],
    ).start(PYTHONPATH=ROOT, MDW_YAHOO_DRILL_HANG="TSLA")
    tree.wait_log(r"watchlist: stopping pid \d+ \(hang: no heartbeat for [\d.]+s; last beat 'fetch TSLA'\)",
                  timeout=20)
    tree.wait_log(r"watchlist: handing 'fetch TSLA' to the new incarnation")
    tree.wait_log(r"watchlist: WARNING quarantine: quarantining TSLA for 900s: the previous process hung on it")
    tree.wait_log(r"watchlist: INFO scanner: watchlist cycle: symbols 4, fresh 3, stored 3")
    rows = StoreReader(tree.state_dir).watchlist(order_by="symbol")
    assert sorted(r["symbol"] for r in rows) == ["AAPL", "MSFT", "NVDA"]
    status = ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"][0]
    assert [q["item"] for q in status["reported"]["quarantined"]] == ["TSLA"]
    assert status["provider_requests"]["yahoo"]["ok"] >= 3
    poll(lambda: (tree.state_dir / "quarantine-watchlist.json").exists(), 2, what="the quarantine file")
    assert tree.stop() == 0
