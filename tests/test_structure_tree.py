"""The embedded defaults as a real tree on the simulated market: every market-structure dataset and the
cycle scanner filled and served, every worker healthy."""
import json
import urllib.error
import urllib.request

import pytest

from supervisor.shared.control_client import ControlClient
from tests.proctree import poll

pytestmark = pytest.mark.slow


def http(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=20) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def test_every_new_dataset_is_filled_and_served_on_the_embedded_defaults(make_tree):
    tree = make_tree(None, {"api": {"port": 0}}, heartbeat_timeout=10.0, startup_timeout=20.0).start()
    port = tree.api_port(timeout=30)
    datasets = ("cycle_scanner", "key_levels", "skew_metrics", "oi_flows", "market_sentiment")

    def written():
        status, body = http(port, "/api/last_update")
        return status == 200 and all(body.get(d) for d in datasets) and body

    poll(written, 60, interval=0.5, what=lambda: f"every new dataset written: {http(port, '/api/last_update')}")
    rows = {r["name"]: r for r in ControlClient(tree.state_dir / "mdwd.sock").call("status")["workers"]}
    assert {"cycle_scanner", "market_structure"} <= set(rows)
    assert rows["market_structure"]["provider_requests"] == {}  # it reads the store only

    status, sentiment = http(port, "/api/market_sentiment")
    assert status == 200 and set(sentiment["data"]) == {"SPY", "QQQ"}
    assert sentiment["data"]["SPY"]["expirations"] == 5
    status, chains = http(port, "/api/chains")
    spy = [c["expiry"] for c in chains["data"] if c["symbol"] == "SPY"]
    status, levels = http(port, f"/api/key_levels?symbol=SPY&expiry={spy[0]}")
    assert status == 200 and levels["source"] == "store" and levels["strike_data"]
    assert http(port, "/api/key_levels?symbol=SPY&expiry=all")[1]["expirations"] == spy
    status, live = http(port, f"/api/key_levels?symbol=F&expiry={spy[0]}")  # not in the universe: fetched live
    assert status == 200 and live["source"] == "live"
    status, snapshot = http(port, f"/api/market_snapshot?symbol=AAPL&expiry={spy[0]}&timeframe=daily")
    assert status == 200 and len(snapshot["price_history"]["candles"]) == 30
    assert http(port, "/api/top_opportunities?limit=3")[1]["count"] == 3
    assert http(port, "/api/market_fear_greed")[0] == 200
    assert http(port, "/api/cycle_scanner?limit=1000")[1]["count"] > 0
    assert http(port, "/api/skew_metrics?symbol=QQQ")[1]["count"] == 5
    code, health = poll(lambda: (a := http(port, "/health"))[0] == 200 and a, 30, interval=0.5,
                        what=lambda: f"/health healthy: {http(port, '/health')}")
    assert health == {"status": "healthy"}
    assert tree.stop() == 0
