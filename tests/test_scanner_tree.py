"""Scanners as supervised processes: a hung upstream call is killed, blamed and quarantined."""
from supervisor.shared.control_client import ControlClient
from tests.proctree import assert_tsla_healed, poll

SYMBOLS = ["AAPL", "MSFT", "TSLA", "NVDA"]


def test_item_that_hung_a_predecessor_is_quarantined_and_the_rest_keeps_updating(make_tree):
    tree = make_tree(
        {"watchlist": {"kind": "watchlist", "interval": 0.5, "batch_size": 1, "symbols": SYMBOLS}},
        sections={"provider": {"kind": "sim", "sim_hang_symbols": ["TSLA"]}},
        heartbeat_timeout=1.5, backoff_initial=0.1, stale_cycles=10,
    ).start()
    assert_tsla_healed(tree, "sim")


def test_scanner_without_a_schwab_token_file_is_unhealthy_from_its_first_failed_cycle(make_tree):
    # schedule always: on Schwab it would otherwise wait for the market's hours (workers/market_hours.py)
    tree = make_tree({"watchlist": {"kind": "watchlist", "interval": 60.0, "schedule": "always"}},
                     sections={"provider": {"kind": "schwab", "base_url": "http://127.0.0.1:9",
                                            "auth_url": "http://127.0.0.1:9"}},
                     heartbeat_timeout=10.0, startup_timeout=30.0).start(SCHWAB_APP_KEY="k", SCHWAB_APP_SECRET="s")
    tree.wait_log(r"watchlist: ERROR scanner: watchlist cycle failed: the provider refused our credentials")
    client = ControlClient(tree.state_dir / "mdwd.sock")
    row = poll(lambda: (r := client.call("status")["workers"][0])["cycles_failed"] and r, 5, what="the failed cycle")
    assert row["state"] == "RUNNING" and not row["healthy"]
    assert "last cycle failed: the provider refused our credentials" in row["failing"]
    assert "schwab-token.json not found" in row["failing"]
    assert row["reported"]["quarantined"] == []
    assert tree.stop() == 0
