"""API traffic for the whole soak: good requests to every endpoint, mixed with junk.

One thread, one new connection per request (http.client), a short pause
between requests. The good requests cover every row of README's "HTTP API"
table with valid parameters (the restart endpoint with a valid token only for
a name that does not exist: a real restart is a fault, applied and recorded by
the fault driver). The junk: bad parameters, unknown paths, wrong methods,
huge URLs and headers, and garbage bytes on a raw socket.

Every answer is counted by status. A 5xx is a violation, except /health's
503 (its documented "degraded"). Refused or reset connections and timeouts
are counted, not judged: the soak kills the API's processes on purpose.
"""
import collections
import http.client
import socket
import threading

TIMEOUT = 5.0
PAUSE = 0.02
MAX_BODY = 1 << 20

GOOD = (
    ("GET", "/health"),
    ("GET", "/api/watchlist"),
    ("GET", "/api/watchlist?order_by=volume&limit=5"),
    ("GET", "/api/watchlist?order_by=symbol&limit=1000"),
    ("GET", "/api/watchlist?order_by=price&limit=1"),
    ("GET", "/api/watchlist?order_by=daily_change_pct&limit=50"),
    ("GET", "/api/whale_flows"),
    ("GET", "/api/whale_flows?sort_by=time&limit=100&hours=168"),
    ("GET", "/api/whale_flows?sort_by=score&limit=3&hours=1"),
    ("GET", "/api/macd_scanner"),
    ("GET", "/api/macd_scanner?filter=bullish&limit=10"),
    ("GET", "/api/macd_scanner?filter=bearish"),
    ("GET", "/api/vpb_scanner?filter=all&limit=1000"),
    ("GET", "/api/vpb_scanner?filter=bullish"),
    ("GET", "/api/vpb_scanner?filter=bearish&limit=2"),
    ("GET", "/api/ttm_squeeze_scanner"),
    ("GET", "/api/ttm_squeeze_scanner?filter=active"),
    ("GET", "/api/ttm_squeeze_scanner?filter=fired&limit=5"),
    ("GET", "/api/ttm_squeeze_scanner?filter=bullish"),
    ("GET", "/api/ttm_squeeze_scanner?filter=bearish&limit=1000"),
    ("GET", "/api/stats"),
    ("GET", "/api/last_update"),
    ("GET", "/api/workers"),
    ("GET", "/metrics"),
    ("POST", "/api/workers/no_such_worker/restart", "token"),
)

JUNK = (
    ("GET", "/api/watchlist?limit=0"),
    ("GET", "/api/watchlist?limit=-5"),
    ("GET", "/api/watchlist?limit=abc"),
    ("GET", "/api/watchlist?limit=99999999999999999999"),
    ("GET", "/api/watchlist?order_by=price;DROP%20TABLE%20watchlist"),
    ("GET", "/api/watchlist?limit=%ff%fe%00"),
    ("GET", "/api/whale_flows?hours=0"),
    ("GET", "/api/whale_flows?hours=-720&sort_by=score"),
    ("GET", "/api/whale_flows?sort_by=%C0%AE%C0%AE"),
    ("GET", "/api/macd_scanner?filter=sideways"),
    ("GET", "/api/vpb_scanner?filter=&limit="),
    ("GET", "/api/ttm_squeeze_scanner?filter=fired&limit=1e3"),
    ("GET", "/api/nope"),
    ("GET", "/api/watchlist/extra/segments"),
    ("GET", "/../../../etc/passwd"),
    ("GET", "/api/workers/macd/restart"),
    ("GET", "/%ff%fe%fd"),
    ("DELETE", "/api/watchlist"),
    ("PUT", "/health"),
    ("POST", "/api/stats"),
    ("PATCH", "/api/workers"),
    ("POST", "/api/workers/macd/restart"),  # no token: 401
    ("POST", "/api/workers/macd/restart", "wrong"),  # bad token: 401
    ("GET", "/api/watchlist?" + "x=" + "a" * 70000),
    ("GET", "/" + "b" * 20000),
    ("GET", "/api/stats", "huge-header"),
)

RAW = (
    b"\x00\xff\x13\x37garbage\r\n\r\n",
    b"GET / HTTP/9.9\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello's first bytes
    b"GET /api/stats HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /api/workers/macd/restart HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nabc",
    b"GET /api/stats HTTP/1.1\r\nthis header has no colon\r\n\r\n",
    b"GET /api/stats HTTP/1.1\r\nHost: x\r\n",  # never finished: the server's read timeout ends it
    b"\r\n\r\n\r\n",
)


class Traffic(threading.Thread):
    def __init__(self, port, token, rng, clock, on_5xx, junk=True):
        super().__init__(name="soak-traffic", daemon=True)
        self.port, self.token, self.rng, self.clock = port, token, rng, clock
        self.on_5xx = on_5xx  # called with (time, what, status, detail)
        self.junk = junk
        self.stopping = threading.Event()
        self.by_status = collections.Counter()  # "200", "503 /health", "conn-refused", ...
        self.good_4xx = collections.Counter()  # a good request answered 4xx: worth a look, not a failure
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                self.one_request()
                self.stopping.wait(PAUSE)
        except Exception as e:  # a bug of the soak, reported as such
            self.error = e

    def stop(self):
        self.stopping.set()
        self.join(TIMEOUT * 3)

    def one_request(self):
        roll = self.rng.random()
        if not self.junk or roll < 0.6:
            self.http(self.rng.choice(GOOD), good=True)
        elif roll < 0.9:
            self.http(self.rng.choice(JUNK), good=False)
        else:
            self.raw(self.rng.choice(RAW))

    def http(self, request, good):
        method, path, *extra = request
        headers = {"User-Agent": "mdw-soak"}
        if extra and extra[0] == "token":
            headers["Authorization"] = f"Bearer {self.token}"
        elif extra and extra[0] == "wrong":
            headers["Authorization"] = "Bearer not-the-token"
        elif extra and extra[0] == "huge-header":
            headers["X-Huge"] = "h" * 100000
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        sent_at = self.clock()
        try:
            conn.request(method, path, headers=headers)
            response = conn.getresponse()
            body = response.read(MAX_BODY)
            self.judge(sent_at, f"{method} {path[:80]}", response.status, body,
                       response.getheader("X-MDW-Served-By"), good)
        except (OSError, http.client.HTTPException) as e:
            self.by_status[_failure_name(e)] += 1
        finally:
            conn.close()

    def raw(self, data):
        sent_at = self.clock()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT) as sock:
                sock.sendall(data)
                sock.shutdown(socket.SHUT_WR)
                reply = _read_all(sock)
        except OSError as e:
            self.by_status[_failure_name(e)] += 1
            return
        if not reply:
            self.by_status["raw: closed without answer"] += 1
            return
        line = reply.split(b"\r\n", 1)[0].split()
        status = int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/") and line[1].isdigit() else None
        if status is None:
            self.by_status["raw: not HTTP"] += 1
            return
        self.judge(sent_at, f"raw {data[:40]!r}", status, reply, None, good=False)

    def judge(self, sent_at, what, status, body, served_by, good):
        health = what.startswith("GET /health")
        self.by_status[f"{status}{' /health' if health and status == 503 else ''}"] += 1
        if status >= 500 and not (health and status == 503):
            self.on_5xx(sent_at, what, status, f"served by {served_by or '?'}: {body[:300]!r}")
        elif good and 400 <= status < 500 and "no_such_worker" not in what:
            self.good_4xx[f"{status} {what}"] += 1


def _read_all(sock):
    chunks, total = [], 0
    while total < MAX_BODY:
        try:
            data = sock.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


def _failure_name(error):
    if isinstance(error, ConnectionRefusedError):
        return "conn-refused"
    if isinstance(error, ConnectionResetError):
        return "conn-reset"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timeout"
    return f"error: {type(error).__name__}"
