"""Scanners as supervised processes: a hung upstream call is killed, blamed and quarantined."""
from supervisor.shared.control_client import ControlClient
from tests.proctree import poll
from workers.store import StoreReader

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA"]


def test_item_that_hung_a_predecessor_is_quarantined_and_the_rest_keeps_updating(make_tree):
    tree = make_tree(
        {"watchlist": {"kind": "watchlist", "interval": 0.5, "batch_size": 1, "symbols": SYMBOLS}},
        sections={"provider": {"kind": "sim", "sim_hang_symbols": ["TSLA"]}},
        heartbeat_timeout=1.5, backoff_initial=0.1, stale_cycles=10,
    ).start()
    tree.wait_log(r"watchlist: stopping pid \d+ \(hang: no heartbeat for [\d.]+s; last beat 'fetch TSLA'\)")
    tree.wait_log(r"watchlist: handing 'fetch TSLA' to the new incarnation")
    tree.wait_log(r"watchlist: WARNING quarantine: quarantining TSLA for 900s: the previous process hung on it")
    tree.wait_log(r"watchlist: INFO scanner: watchlist cycle: symbols 4, fresh 3, stored 3")
    rows = StoreReader(tree.state_dir).watchlist(order_by="symbol")
    assert sorted(r["symbol"] for r in rows) == ["AAPL", "MSFT", "NVDA"]
    status = ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"][0]
    assert [q["item"] for q in status["reported"]["quarantined"]] == ["TSLA"]
    assert status["provider_requests"]["sim"]["ok"] >= 3
    poll(lambda: (tree.state_dir / "quarantine-watchlist.json").exists(), 2, what="the quarantine file")
    assert tree.stop() == 0
