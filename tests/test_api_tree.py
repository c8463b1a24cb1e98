"""The API as a supervised child: it serves the store and the supervisor's live status."""
import json
import subprocess
import urllib.error
import urllib.request

import psutil
import pytest

from api.server import SERVED_BY
from tests.proctree import Tree, poll

TOKEN = "s3cret-token"


def http(method, url, token=None):
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ps_args(pid):
    """The command line `ps aux` shows for a process."""
    return subprocess.run(["ps", "-o", "args=", "-p", str(pid)], capture_output=True, text=True,
                          timeout=10).stdout.strip()


def test_api_child_reports_the_tree_and_restarts_a_worker_on_an_authorised_request(make_tree):
    tree = make_tree(
        {"api": {"kind": "api", "interval": 0.5},
         "watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": ["AAPL", "MSFT"]}},
        sections={"api": {"port": 0, "token": TOKEN, "processes": 2}},
    ).start()
    port = int(tree.wait_log(r"api: INFO api: serving the API on 127\.0\.0\.1:(\d+)").group(1))
    base = f"http://127.0.0.1:{port}"
    tree.wait_log(r"ready: 2/2 healthy")
    http_tree_up = lambda: len(psutil.Process(tree.pid).children(recursive=True)) == 5  # noqa: E731
    poll(http_tree_up, 15, what="the API's manager and its two serving processes")
    titles = sorted(ps_args(p.pid) for p in psutil.Process(tree.pid).children(recursive=True))
    assert titles == ["mdw: api", "mdw: api.http", "mdw: api.http worker-1", "mdw: api.http worker-2",
                      "mdw: watchlist"], titles
    assert sorted(p.name() for p in psutil.Process(tree.pid).children(recursive=True)) == [
        "mdw:api", "mdw:api.http", "mdw:api.http", "mdw:api.http", "mdw:watchlist"]
    status, body = poll(lambda: (lambda r: r if r[1].get("count") == 2 else None)(http("GET", f"{base}/api/watchlist")),
                        10, what="the watchlist served")
    assert status == 200 and {row["symbol"] for row in body["data"]} == {"AAPL", "MSFT"}
    status, body = http("GET", f"{base}/api/workers")
    rows = {row["name"]: row for row in body["data"]}
    assert status == 200 and rows["watchlist"]["state"] == "RUNNING" and rows["api"]["pid"]
    old_pid = rows["watchlist"]["pid"]
    assert http("POST", f"{base}/api/workers/watchlist/restart")[0] == 401
    assert http("POST", f"{base}/api/workers/watchlist/restart", token="wrong")[0] == 401
    assert http("POST", f"{base}/api/workers/nope/restart", token=TOKEN) == (
        404, {"success": False, "error": "no worker named 'nope'; known: watchlist, api"})
    assert http("POST", f"{base}/api/workers/watchlist/restart", token=TOKEN)[0] == 202
    tree.wait_log(rf"watchlist: pid {old_pid} ended: SIGTERM \(manual: restart requested\)")
    health = poll(lambda: (lambda r: r if r[0] == 200 else None)(http("GET", f"{base}/health")), 10,
                  what="healthy again after the restart")
    assert health[1] == {"status": "healthy"}
    assert tree.stop() == 0
    poll(lambda: not tree.survivors(), 5, what="the API's serving processes to be gone too")


@pytest.fixture
def two_trees(tmp_path):
    """Make trees each in a directory of its own; every process of them is killed afterwards."""
    trees = []

    def make(name, workers, sections):
        (tmp_path / name).mkdir()
        tree = Tree(tmp_path / name, workers, sections)
        trees.append(tree)
        return tree

    yield make
    for tree in trees:
        tree.kill_everything()


def test_a_second_tree_on_the_same_port_fails_clearly_and_the_first_keeps_serving_its_own_data(two_trees):
    def workers(symbols):
        return {"api": {"kind": "api", "interval": 0.5},
                "watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": symbols}}

    first = two_trees("first", workers(["AAPL", "MSFT"]), {"api": {"port": 0}}).start()
    port = int(first.wait_log(r"api: INFO api: serving the API on 127\.0\.0\.1:(\d+)").group(1))
    first.wait_log(r"ready: 2/2 healthy")
    second = two_trees("second", workers(["TSLA"]), {"api": {"port": port}}).start()
    second.wait_log(rf"api: ERROR api: cannot listen on 127\.0\.0\.1:{port}: another process holds the port "
                    r"\(Address already in use, pid \d+")
    second.wait_log(r"api: pid \d+ ended: exit 69")
    second.wait_log(r"watchlist: INFO scanner: watchlist cycle: symbols 1, fresh 1, stored 1")  # its own store

    def watchlist():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/watchlist", timeout=5) as response:
            return response.headers[SERVED_BY], {row["symbol"] for row in json.loads(response.read())["data"]}

    poll(lambda: watchlist()[1] == {"AAPL", "MSFT"}, 10, what="the first tree's watchlist served")
    for _ in range(20):
        assert watchlist()[1] == {"AAPL", "MSFT"}
    assert first.stop() == 0


def test_restart_all_over_the_api_answers_202_and_restarts_the_api_last(make_tree):
    tree = make_tree(
        {"api": {"kind": "api", "interval": 0.5},
         "watchlist": {"kind": "watchlist", "interval": 1.0, "symbols": ["AAPL", "MSFT"]},
         "steady": {"kind": "faulty", "interval": 0.5, "mode": "healthy", "beat_interval": 0.05}},
        sections={"api": {"port": 0, "token": TOKEN}},
    ).start()
    base = f"http://127.0.0.1:{tree.api_port()}"
    tree.wait_log(r"ready: 3/3 healthy")
    status, body = http("POST", f"{base}/api/workers/all/restart", token=TOKEN)
    assert (status, body) == (202, {"success": True, "name": "all", "status": "restart queued"})
    api_stop = tree.wait_log(r"api: stopping pid \d+ \(manual: restart requested \(last\)\)")
    started = [m.start() for m in map(lambda n: tree.wait_log(rf"{n}: started pid \d+", count=2),
                                      ("watchlist", "steady"))]
    assert all(at < api_stop.start() for at in started), "the API restarted before the others were back"
    port = int(tree.wait_log(r"serving the API on [\d.]+:(\d+)", timeout=20, count=2).group(1))  # port 0: a new one
    poll(lambda: answers(f"http://127.0.0.1:{port}/health") == 200, 20, what="healthy again with a new API")
    assert tree.stop() == 0


def answers(url):
    """The status of a GET, or None while nothing answers (the API restarting)."""
    try:
        return http("GET", url)[0]
    except (OSError, ValueError):
        return None
