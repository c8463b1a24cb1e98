"""A real tree on a Saturday (the calendar's clock moved there by a preload module): a scanner idling by
its schedule is neither killed nor failing, calls nothing upstream, and /health stays 200."""
import json
import os
import urllib.error
import urllib.request

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SATURDAY = "2026-11-28T15:00:00+00:00"
INTERVAL = 0.5


def http(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_scanner_idling_over_the_weekend_is_neither_killed_nor_failing_and_calls_nothing(make_tree):
    tree = make_tree(
        {"watchlist": {"kind": "watchlist", "interval": INTERVAL, "schedule": "regular", "symbols": ["AAPL"]},
         "api": {"kind": "api", "interval": 0.5}},
        sections={"api": {"port": 0, "processes": 1}},
        preload=["tests.market_hours_clock"], stale_cycles=3.0, startup_timeout=2.0,
    ).start(PYTHONPATH=ROOT, MDW_TEST_MARKET_NOW=SATURDAY)
    tree.wait_log(r"watchlist: INFO schedule: off schedule \(regular\) until Mon 2026-11-30 09:30 New York "
                  r"\(2026-11-30T14:30:00Z\): idling, beating, no upstream calls")
    client = ControlClient(tree.state_dir / "mdwd.sock")

    def watchlist():
        return next(r for r in client.call("status")["workers"] if r["name"] == "watchlist")

    # Past the failing grace (startup_timeout + interval = 2.5 s) and four times stale_cycles' 1.5 s.
    row = poll(lambda: (r := watchlist())["cycles_ok"] >= 14 and r, 30, what="14 cycles off schedule")
    assert (row["state"], row["healthy"], row["failing"], row["restarts"]) == ("RUNNING", True, None, 0)
    assert row["cycles_failed"] == 0 and row["last_cycle"]["counts"] == {"off_schedule": 1}
    assert row["reported"]["schedule"] == "regular"
    assert not any(n for outcomes in row["provider_requests"].values() for n in outcomes.values())
    port = tree.api_port()
    status, body = poll(lambda: (a := http(f"http://127.0.0.1:{port}/health"))[0] == 200 and a, 10,
                        what=lambda: f"/health 200: {http(f'http://127.0.0.1:{port}/health')}")
    assert body == {"status": "healthy"}  # the watchlist never written: no problem on a Saturday
    market = http(f"http://127.0.0.1:{port}/api/last_update")[1]["market"]
    assert market["open"] is False and market["next_open"] == "2026-11-30T14:30:00Z"
    assert "stopping pid" not in tree.log()
    assert tree.stop() == 0
