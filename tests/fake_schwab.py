"""A local Schwab-shaped HTTP server for tests, that can be told to misbehave.

Serves `/marketdata/v1/{quotes,pricehistory,chains,expirationchain}` in the
JSON shapes of Schwab's Trader API (data from a `SimProvider`), the OAuth
endpoints, and `/echo` (plain JSON, no auth) for HTTP-layer tests. Binds
127.0.0.1 on an ephemeral port.

OAuth, as Schwab does it for an app registered with `callback_url`:
`GET /v1/oauth/authorize?client_id=&redirect_uri=` stands in for the login
pages and answers 302 to `{callback_url}?code=<code>%40&session=...` (a code
usable once); `POST /v1/oauth/token` takes HTTP Basic (app key, secret) and
either grant_type=authorization_code (code, redirect_uri: a new refresh
token, which replaces `refresh_token`) or grant_type=refresh_token. `form`s
of the token requests are kept in `token_forms`.

    fake.misbehave("/marketdata/v1/quotes", "hang")                 # forever
    fake.misbehave("/echo", "status", status=429, retry_after=1, times=1)
    fake.misbehave("/marketdata/v1/chains", "truncate", symbol="SPY")

Modes: hang (no answer until the server stops), hang_body (headers, then
nothing), trickle / trickle_headers (one byte per `interval` s), status (any
code, optional Retry-After and body), junk (200 with invalid JSON), truncate
(Content-Length larger than the body, then close), html (an HTML error page,
`status` 200 by default), echo_secrets (500 whose body repeats the request's
Authorization header and form). `times=None` means until cleared.

`stop()` releases hung handlers, closes client connections and joins every
handler thread, so no test leaks threads.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pandas as pd
from zoneinfo import ZoneInfo

from workers.providers.sim import SimProvider, is_trading_day

MARKET = "/marketdata/v1"
TOKEN_PATH = "/v1/oauth/token"
AUTHORIZE_PATH = "/v1/oauth/authorize"
CALLBACK_URL = "https://127.0.0.1:8182"
CHICAGO = ZoneInfo("America/Chicago")
MARKET_TIME = dt.datetime(2026, 3, 30, 15, 0, tzinfo=dt.timezone.utc)  # Monday of Good Friday week


@dataclass
class Rule:
    path: str
    mode: str
    symbol: str | None
    times: int | None
    opts: dict = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads
    block_on_close = True


class FakeSchwab:
    def __init__(self, market: SimProvider | None = None, *, app_key="test-app-key",
                 app_secret="test-app-secret", refresh_token="refresh-token-0", certfile=None,
                 callback_url=CALLBACK_URL):
        self.market = market or SimProvider(seed=5, clock=lambda: MARKET_TIME)
        self.app_key, self.app_secret, self.refresh_token = app_key, app_secret, refresh_token
        self.callback_url = callback_url
        self.codes: set[str] = set()  # authorization codes not used yet
        self.token_forms: list[dict] = []  # the form of every token request, in order
        self.certfile = certfile
        self.stopping = threading.Event()
        self.invalid_symbols: set[str] = set()
        self.requests: list[tuple[str, str, dict]] = []  # (method, path, query)
        self.request_times: list[float] = []  # time.monotonic() of each request, in arrival order
        self.connections = 0
        self.access_tokens: set[str] = set()
        self._issued = 0
        self._rules: list[Rule] = []
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._server = self._thread = None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> "FakeSchwab":
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        if self.certfile:
            import ssl
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.certfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-schwab",
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._server.server_close()  # joins handler threads
        self._thread.join()

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self._server.server_address[1]}"

    # -- test controls -----------------------------------------------------------

    def misbehave(self, path: str, mode: str, *, symbol: str | None = None,
                  times: int | None = None, **opts) -> None:
        with self._lock:
            self._rules.append(Rule(path, mode, symbol, times, opts))

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def issue_access_token(self) -> str:
        with self._lock:
            self._issued += 1
            token = f"access-token-{self._issued}-{'x' * 24}"
            self.access_tokens.add(token)
            return token

    def issue_code(self) -> str:
        """A fresh authorization code, as Schwab hands one to the callback after a login."""
        with self._lock:
            code = f"C0.code-{len(self.codes) + self._issued}-{'c' * 16}@"
            self.codes.add(code)
            return code

    def revoke_access_tokens(self) -> None:
        """Every access token handed out so far now gets 401 (as after expiry)."""
        with self._lock:
            self.access_tokens.clear()

    def hits(self, path: str) -> int:
        with self._lock:
            return sum(1 for _, p, _ in self.requests if p == path)

    # -- used by the handler --------------------------------------------------------

    def _rule_for(self, path: str, query: dict) -> Rule | None:
        symbols = set(query.get("symbols", [""])[0].split(",")) | set(query.get("symbol", []))
        with self._lock:
            for rule in self._rules:
                if rule.path == path and (rule.symbol is None or rule.symbol in symbols):
                    if rule.times is not None:
                        rule.times -= 1
                        if rule.times <= 0:
                            self._rules.remove(rule)
                    return rule
        return None

    # -- Schwab-shaped payloads ---------------------------------------------------

    def quotes_payload(self, query):
        symbols = [s for s in query.get("symbols", [""])[0].split(",") if s]
        good = [s for s in symbols if s not in self.invalid_symbols]
        batch = self.market.quotes(good)
        out = {}
        for symbol, row in batch.iterrows():
            price, change = float(row["price"]), float(row["daily_change"])
            regular_time = pd.Timestamp(f"{row['session']} 15:59", tz="America/New_York")
            extended = price != float(row["session_last"])  # the sim's after-hours drift
            trade_time = pd.Timestamp(self.market._clock()) if extended else regular_time
            out[symbol] = {"assetMainType": "EQUITY", "symbol": symbol, "realtime": True,
                           "quote": {"lastPrice": price, "closePrice": round(price - change, 4),
                                     "netChange": change,
                                     "netPercentChange": float(row["daily_change_pct"]),
                                     "totalVolume": int(row["volume"]), "mark": price,
                                     "openPrice": float(row["open"]), "highPrice": float(row["high"]),
                                     "lowPrice": float(row["low"]),
                                     "tradeTime": int(trade_time.timestamp() * 1000),
                                     "bidPrice": round(price - 0.01, 2),
                                     "askPrice": round(price + 0.01, 2)},
                           "regular": {"regularMarketLastPrice": float(row["session_last"]),
                                       "regularMarketTradeTime": int(regular_time.timestamp() * 1000)}}
        bad = [s for s in symbols if s in self.invalid_symbols]
        if bad:
            out["errors"] = {"invalidSymbols": bad}
        return out

    def pricehistory_payload(self, query):
        symbol = query["symbol"][0]
        if query.get("frequencyType") == ["minute"]:
            bars = self.market.intraday_bars(symbol, int(query["frequency"][0]),
                                             int(query["period"][0]))
            stamps = [int(ts.timestamp() * 1000) for ts in bars.index]
        else:
            start = dt.datetime.fromtimestamp(int(query["startDate"][0]) / 1000, dt.timezone.utc)
            days = (self.market._clock() - start).days
            bars = self.market.daily_bars(symbol, days)
            stamps = [int(dt.datetime.combine(ts.date(), dt.time(), CHICAGO).timestamp() * 1000)
                      for ts in bars.index]
        candles = [{"open": o, "high": h, "low": l_, "close": c, "volume": int(v), "datetime": t}
                   for (o, h, l_, c, v), t in zip(bars.itertuples(index=False), stamps)]
        return {"symbol": symbol, "empty": not candles, "candles": candles}

    def expirationchain_payload(self, query):
        symbol = query["symbol"][0]
        today = self.market._clock().date()
        weeklies = self.market.expirations(symbol, 6)
        dates = set(weeklies)
        if symbol in ("SPY", "QQQ", "IWM"):  # dailies, as for the big index ETFs
            day = today
            while day < weeklies[-1]:
                day += dt.timedelta(days=1)
                if is_trading_day(day):
                    dates.add(day)
        return {"expirationList": [
            {"expirationDate": d.isoformat(), "daysToExpiration": (d - today).days,
             "expirationType": "S" if 15 <= d.day <= 21 and d.weekday() == 4 else "W",
             "settlementType": "P", "optionRoots": symbol, "standard": True}
            for d in sorted(dates)]}

    def chains_payload(self, query):
        symbol = query["symbol"][0]
        expiry = dt.date.fromisoformat(query["fromDate"][0])
        chain = self.market.option_chain(symbol, expiry, 10.0)
        maps = {"CALL": {}, "PUT": {}}
        for row in chain.itertuples(index=False):
            key = f"{row.expiry.isoformat()}:{row.dte}"
            contract = {"putCall": row.type, "symbol": f"{symbol:<6}{row.expiry:%y%m%d}"
                        f"{row.type[0]}{int(row.strike * 1000):08d}",
                        "bid": row.bid, "ask": row.ask, "last": row.last, "mark": row.mark,
                        "totalVolume": int(row.volume), "openInterest": int(row.open_interest),
                        "volatility": row.iv, "delta": row.delta, "strikePrice": row.strike,
                        "expirationDate": f"{row.expiry.isoformat()}T20:00:00.000+00:00",
                        "daysToExpiration": int(row.dte), "multiplier": 100.0}
            maps[row.type].setdefault(key, {}).setdefault(str(float(row.strike)), []).append(
                contract)
        spot = float(chain["underlying_price"].iloc[0]) if len(chain) else 0.0
        return {"symbol": symbol, "status": "SUCCESS", "strategy": "SINGLE",
                "underlyingPrice": spot, "isDelayed": False, "numberOfContracts": len(chain),
                "callExpDateMap": maps["CALL"], "putExpDateMap": maps["PUT"]}


def _handler_for(fake: FakeSchwab):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            # headers and body go out as two writes: without NODELAY, Nagle plus the
            # client's delayed ACK add 40 ms to every keep-alive response
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with fake._lock:
                fake.connections += 1
                fake._sockets.add(self.connection)

        def finish(self):
            with fake._lock:
                fake._sockets.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def log_message(self, *args):
            pass

        def do_GET(self):
            self._serve("GET", b"")

        def do_POST(self):
            self._serve("POST", self.rfile.read(int(self.headers.get("Content-Length", 0))))

        def _serve(self, method, body):
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            with fake._lock:
                fake.requests.append((method, parts.path, query))
                fake.request_times.append(time.monotonic())
            try:
                rule = fake._rule_for(parts.path, query)
                if rule is not None:
                    return self._misbehave(rule, body)
                if parts.path == "/echo":
                    return self._json(200, {"ok": True, "query": query})
                if parts.path == TOKEN_PATH:
                    return self._token(body)
                if parts.path == AUTHORIZE_PATH:
                    return self._authorize(query)
                if not self._authorized():
                    return self._json(401, {"errors": [{"status": "401", "title": "Unauthorized"}]})
                name = parts.path.removeprefix(MARKET + "/")
                payload = getattr(fake, f"{name}_payload", None)
                if payload is None:
                    return self._json(404, {"errors": [{"status": "404", "title": "Not Found"}]})
                return self._json(200, payload(query))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _authorized(self):
            header = self.headers.get("Authorization", "")
            with fake._lock:
                return header.startswith("Bearer ") and header[7:] in fake.access_tokens

        def _authorize(self, query):
            """The login pages, skipped: straight to the callback with a code (or an error)."""
            if query.get("client_id") != [fake.app_key] or query.get("redirect_uri") != [fake.callback_url]:
                return self._json(400, {"error": "invalid_request",
                                        "error_description": "unknown client_id or redirect_uri"})
            location = f"{fake.callback_url}?{urlencode({'code': fake.issue_code(), 'session': 'fake-session'})}"
            self._send(302, b"", "text/plain", [("Location", location)])

        def _token(self, body):
            expected = base64.b64encode(f"{fake.app_key}:{fake.app_secret}".encode()).decode()
            form = parse_qs(body.decode())
            with fake._lock:
                fake.token_forms.append({k: v[0] for k, v in form.items()})
            if self.headers.get("Authorization") != f"Basic {expected}":
                return self._json(401, {"error": "invalid_client"})
            if form.get("grant_type") == ["authorization_code"]:
                return self._code_exchange(form)
            if form.get("grant_type") != ["refresh_token"] or \
                    form.get("refresh_token") != [fake.refresh_token]:
                return self._json(400, {"error": "invalid_grant",
                                        "error_description": "refresh token expired"})
            return self._json(200, {"access_token": fake.issue_access_token(),
                                    "refresh_token": fake.refresh_token, "expires_in": 1800,
                                    "token_type": "Bearer", "scope": "api"})

        def _code_exchange(self, form):
            code = form.get("code", [""])[0]
            with fake._lock:
                known = code in fake.codes
                fake.codes.discard(code)  # a code works once
            if not known or form.get("redirect_uri") != [fake.callback_url]:
                return self._json(400, {"error": "invalid_grant",
                                        "error_description": "authorization code invalid or expired"})
            with fake._lock:
                fake.refresh_token = f"refresh-token-{fake._issued + 1}-{'r' * 24}"
            return self._json(200, {"access_token": fake.issue_access_token(),
                                    "refresh_token": fake.refresh_token, "expires_in": 1800,
                                    "token_type": "Bearer", "scope": "api",
                                    "id_token": "fake-id-token"})

        def _json(self, status, payload, extra_headers=()):
            self._send(status, json.dumps(payload).encode(), "application/json", extra_headers)

        def _send(self, status, data, content_type, extra_headers=(), length=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data) if length is None else length))
            for name, value in extra_headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()

        def _misbehave(self, rule, body):
            opts, mode = rule.opts, rule.mode
            interval = opts.get("interval", 0.05)
            if mode == "hang":
                fake.stopping.wait()
                self.close_connection = True
            elif mode == "hang_body":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.flush()
                fake.stopping.wait()
                self.close_connection = True
            elif mode in ("trickle", "trickle_headers"):
                data = json.dumps({"ok": True, "pad": "x" * 200}).encode()
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        f"Content-Length: {len(data)}\r\n\r\n").encode()
                if mode == "trickle":
                    self.wfile.write(head)
                    head = b""
                for i in range(len(head + data)):
                    if fake.stopping.wait(interval):
                        break
                    self.wfile.write((head + data)[i:i + 1])
                    self.wfile.flush()
                self.close_connection = True
            elif mode == "status":
                headers = [("Retry-After", str(opts["retry_after"]))] if "retry_after" in opts else []
                payload = opts.get("body", {"errors": [{"status": str(opts["status"])}]})
                self._json(opts["status"], payload, headers)
            elif mode == "junk":
                self._send(200, b'{"AAPL": {"quote": {"lastPrice": 1', "application/json")
            elif mode == "truncate":
                data = json.dumps({"ok": True, "pad": "y" * 400}).encode()
                self._send(200, data[: len(data) // 2], "application/json", length=len(data))
                self.close_connection = True
            elif mode == "html":
                page = (b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
                        b"<body><h1>Bad Gateway</h1><p>upstream unavailable</p></body></html>")
                self._send(opts.get("status", 200), page, "text/html")
            elif mode == "echo_secrets":
                echoed = f"auth={self.headers.get('Authorization')} form={body.decode()}"
                self._json(500, {"message": echoed})
            else:
                raise ValueError(f"unknown mode {mode}")

    return Handler
