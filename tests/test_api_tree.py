"""The API as a supervised child: it serves the store and the supervisor's live status."""
import json
import urllib.error
import urllib.request

from tests.proctree import poll

TOKEN = "s3cret-token"


def http(method, url, token=None):
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_api_child_reports_the_tree_and_restarts_a_worker_on_an_authorised_request(make_tree):
    tree = make_tree(
        {"api": {"kind": "api", "interval": 0.5},
         "watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": ["AAPL", "MSFT"]}},
        sections={"api": {"port": 0, "token": TOKEN, "processes": 2}},
    ).start()
    port = int(tree.wait_log(r"api: INFO api: serving the API on 127\.0\.0\.1:(\d+)").group(1))
    base = f"http://127.0.0.1:{port}"
    tree.wait_log(r"ready: 2/2 healthy")
    status, body = poll(lambda: (lambda r: r if r[1].get("count") == 2 else None)(http("GET", f"{base}/api/watchlist")),
                        10, what="the watchlist served")
    assert status == 200 and {row["symbol"] for row in body["data"]} == {"AAPL", "MSFT"}
    status, body = http("GET", f"{base}/api/workers")
    rows = {row["name"]: row for row in body["data"]}
    assert status == 200 and rows["watchlist"]["state"] == "RUNNING" and rows["api"]["pid"]
    old_pid = rows["watchlist"]["pid"]
    assert http("POST", f"{base}/api/workers/watchlist/restart")[0] == 401
    assert http("POST", f"{base}/api/workers/watchlist/restart", token="wrong")[0] == 401
    assert http("POST", f"{base}/api/workers/nope/restart", token=TOKEN)[0] == 404
    assert http("POST", f"{base}/api/workers/watchlist/restart", token=TOKEN)[0] == 202
    tree.wait_log(rf"watchlist: pid {old_pid} ended: SIGTERM \(manual: restart requested\)")
    health = poll(lambda: (lambda r: r if r[0] == 200 else None)(http("GET", f"{base}/health")), 10,
                  what="healthy again after the restart")
    assert health[1] == {"status": "healthy"}
    assert tree.stop() == 0
    poll(lambda: not tree.survivors(), 5, what="the API's serving processes to be gone too")
