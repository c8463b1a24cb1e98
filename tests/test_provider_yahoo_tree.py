"""A yahoo call that never returns, under a real supervisor: its worker is killed and the symbol quarantined.

yfinance offers no total deadline for a call (workers/providers/yahoo.py), so the supervisor's hang kill is
what bounds one. The tree runs the watchlist on kind = "yahoo" with the real yfinance over the fake Yahoo
(preloaded by mdwd: tests/yahoo_drill.py), whose request for TSLA never returns.
"""
from pathlib import Path

from tests.proctree import assert_tsla_healed

ROOT = str(Path(__file__).resolve().parent.parent)
SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA"]


def test_a_yahoo_call_that_never_returns_is_killed_and_its_symbol_quarantined_by_the_successor(make_tree):
    tree = make_tree(
        {"watchlist": {"kind": "watchlist", "interval": 0.5, "batch_size": 1, "symbols": SYMBOLS,
                       "schedule": "always"}},
        sections={"provider": {"kind": "yahoo", "requests_per_minute": 6000}},
        heartbeat_timeout=1.5, backoff_initial=0.1, stale_cycles=10, preload=["tests.yahoo_drill"],
    ).start(PYTHONPATH=ROOT, MDW_YAHOO_DRILL_HANG="TSLA")
    assert_tsla_healed(tree, "yahoo", timeout=20)
