"""The HTTP API (API.md) as a Bottle application: `create_app(reader, status, token=...)`.

Every answer is JSON (`application/json; charset=utf-8`) except /metrics and
the status page (api/page.py: GET / for a browser, and its /static/ files).
Bodies are written the way the old Flask service's `jsonify` wrote them -
keys sorted, no spaces, non-ASCII escaped, a trailing newline - so the
dashboard client sees the same bytes. Errors are `{"success": false,
"error": "..."}`: 400 bad parameter, 401 bad token, 403 no token configured,
404 unknown path or worker, 405 wrong method, 409 a restart mdwd refused
for another reason, 503 store or supervisor unavailable; an unexpected
exception is logged and answered 500 in JSON (never a traceback, never HTML).
Malformed HTTP never reaches the app: granian answers it 400 with an empty body.

Successful answers of the store endpoints may be served from a cache for
`cache_ttl` seconds (the worker uses 1 s), keyed by the raw path and query
string and consulted before Bottle's router: under load a hit costs a dict
lookup, the dashboard costs one SQLite query per distinct URL per second,
and the data is at most that much older (`age_s` included).
"""
from __future__ import annotations

import logging
import re
import threading
import time
import urllib.parse
from typing import Any, Callable, Optional

import bottle

from workers import market_hours
from workers.store import history as H

from . import metrics
from . import structure_routes
from . import validation as V
from .answers import (JSON_CONTENT_TYPE, dataset_fields, dumps, json_answer, json_endpoint, json_failure, listing,
                      request_query)
from .cors import CorsPolicy
from .health import health_problems
from .page import index, install_page, wants_html
from .status import schedules
from .symbol_series import WARMUP_BARS, symbol_series

__all__ = ["create_app", "JSON_CONTENT_TYPE", "WORKER_FIELDS", "dumps"]

log = logging.getLogger("api")

# The fields of a GET /api/workers row (API.md), taken from the supervisor's status rows.
WORKER_FIELDS = ("name", "state", "healthy", "problem", "warnings", "pid", "uptime_s", "restarts", "last_beat_age_s",
                 "last_cycle_ok_age_s", "phase", "item", "last_exit", "rss_mb", "backoff_s", "quarantined")
_MAX_PATH_ECHO = 200
# Longer URLs get a JSON 414 from the app. Beyond 64 KiB granian's HTTP parser answers 414 itself,
# before any code of ours runs, with an empty body.
MAX_URL_BYTES = 8192
ALL_WORKERS = "all"  # POST /api/workers/all/restart: every worker, this API last
_METHOD_ORDER = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# GET /: the old service's banner, with its own values (scripts/api_server.py): the API it serves is
# that one's, version 1.0 of the contract.
SERVICE_NAME, SERVICE_VERSION = "Options Scanner API", "1.0"



def _raw_answer(start_response, status: int, body: bytes, headers=()) -> list[bytes]:
    """An answer made before Bottle's router (CORS refusals, OPTIONS): JSON, or nothing for a 204."""
    extra = [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(body)))] if body else []
    start_response(f"{status} {bottle.HTTP_CODES.get(status, '')}".strip(), [*headers, *extra])
    return [body]


def _path(environ=None) -> str:
    """The path as the client sent it, percent-escaped where it is not plain text, and cut to a length."""
    environ = environ if environ is not None else bottle.request.environ
    raw = environ.get("bottle.raw_path", environ.get("PATH_INFO", ""))  # Bottle keeps what it was sent there
    path = urllib.parse.quote(raw.encode("latin-1", "replace"), safe="/:@!$&'()*+,;=-._~")
    return path if len(path) <= _MAX_PATH_ECHO else path[:_MAX_PATH_ECHO] + "..."


def _not_found(path: str, routes) -> str:
    listed = sorted({re.sub(r"<(\w+)(:[^>]*)?>", r"<\1>", route.rule) for route in routes
                     if route.method in ("GET", "POST") and not route.rule.startswith("/static/")})
    return f"no such endpoint: {path}; the endpoints (README, \"HTTP API\"): {', '.join(listed)}"


class ResponseCache:
    """Whole 200 answers of the store endpoints by raw (path, query string), for `ttl` seconds.

    It sits in front of the router (see _JsonBottle.wsgi): a hit costs a dict
    lookup, not a Bottle request. ttl <= 0 turns it off. At most `max_entries`
    URLs are kept; when full it starts over, so odd query strings cannot grow it.
    """

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic, max_entries: int = 512):
        self.ttl = float(ttl)
        self._clock = clock
        self._max = max_entries
        self._entries: dict = {}
        self._lock = threading.Lock()

    def get(self, key) -> Optional[tuple[list, bytes]]:
        hit = self._entries.get(key)
        if hit is None or hit[0] <= self._clock():
            return None
        return hit[1], hit[2]

    def put(self, key, headers: list, body: bytes) -> None:
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.clear()
            self._entries[key] = (self._clock() + self.ttl, headers, body)


class _JsonBottle(bottle.Bottle):
    """Bottle whose own errors (404, 405, 500, bad path encoding) are JSON too, with the
    CORS policy (api/cors.py) and then a response cache for the GET endpoints in
    `cacheable` in front of it."""

    cache: Optional[ResponseCache] = None
    cacheable: frozenset = frozenset()
    cors: CorsPolicy = CorsPolicy()

    def wsgi(self, environ, start_response):
        length = len(environ.get("PATH_INFO", "")) + len(environ.get("QUERY_STRING", ""))
        if length > MAX_URL_BYTES:
            return _raw_answer(start_response, 414, dumps({"success": False, "error": (
                f"the URL is {length} bytes long; at most {MAX_URL_BYTES} are answered")}))
        try:  # WSGI hands the path over as latin-1 text of its bytes; Bottle would drop what is not UTF-8
            environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8")
        except UnicodeError:
            return _raw_answer(start_response, 404, dumps({"success": False,
                                                           "error": _not_found(_path(environ), self.routes)}))
        if environ.get("REQUEST_METHOD") == "OPTIONS":
            return self._options(environ, start_response)
        refusal = self.cors.refusal(environ)
        if refusal is not None:
            return _raw_answer(start_response, 403, dumps({"success": False, "error": refusal}))
        cors_headers = self.cors.response_headers(environ)

        def start(status, headers, exc_info=None):
            return start_response(status, [*headers, *cors_headers], exc_info)

        return self._cached(environ, start)

    def _options(self, environ, start_response):
        """OPTIONS on a path: its methods, or a CORS preflight's answer; unknown paths are the router's 404."""
        methods = self._methods(environ)
        if methods is None:
            return super().wsgi(environ, start_response)
        status, headers, error = self.cors.options(environ, methods)
        body = b"" if error is None else dumps({"success": False, "error": error})
        return _raw_answer(start_response, status, body, headers)

    def _methods(self, environ) -> Optional[list[str]]:
        """The methods the router answers on this path (HEAD with GET), or None for an unknown path."""
        try:
            self.router.match({**environ, "REQUEST_METHOD": "OPTIONS"})
        except bottle.HTTPError as exc:
            allowed = [m.strip() for m in (exc.get_header("Allow") or "").split(",") if m.strip()]
            if exc.status_code != 405 or not allowed:
                return None
            return sorted({*allowed, *(["HEAD"] if "GET" in allowed else [])}, key=_METHOD_ORDER.index)
        return None  # an OPTIONS route of its own: Bottle answers it

    def _cached(self, environ, start_response):
        cache = self.cache
        path = environ.get("PATH_INFO", "")
        if cache is None or cache.ttl <= 0 or path not in self.cacheable \
                or environ.get("REQUEST_METHOD") != "GET":
            return super().wsgi(environ, start_response)
        key = (path, environ.get("QUERY_STRING", ""))
        hit = cache.get(key)
        if hit is not None:
            start_response("200 OK", hit[0])
            return [hit[1]]
        answered = []

        def remember(status, headers, exc_info=None):
            answered.append((status, headers))
            return start_response(status, headers, exc_info)

        out = super().wsgi(environ, remember)
        if answered and answered[0][0].startswith("200 ") and isinstance(out, list):
            body = b"".join(out)
            cache.put(key, list(answered[0][1]), body)
            return [body]
        return out

    def default_error_handler(self, res: bottle.HTTPError) -> bytes:
        code = res.status_code
        request = bottle.request
        if code == 404:
            error = _not_found(_path(), self.routes)
        elif code == 405:
            allowed = res.get_header("Allow") or ""
            error = (f"method {request.method} is not allowed on {_path()}; "
                     f"allowed: {', '.join(m.strip() for m in allowed.split(',') if m.strip())}")
        elif code >= 500:
            if res.traceback:
                log.error("unhandled exception on %s %s:\n%s", request.method, _path(), res.traceback)
            error = "internal error; the API worker's log has the details"
        else:
            error = str(res.body) if isinstance(res.body, str) and res.body else res.status_line
        bottle.response.content_type = JSON_CONTENT_TYPE
        return dumps({"success": False, "error": error})


def create_app(reader, status, *, token: str = "", cache_ttl: float = 0.0,
               api_name: str = "api", cors_origins=("*",),
               clock: Optional[Callable[[], Any]] = None, refresh_token_expiry=None, live=None) -> bottle.Bottle:
    """The API over a StoreReader and a StatusSource (see api/status.py).

    `token` enables the mutating endpoints (empty: they answer 403).
    `cors_origins` is `[api] cors_origins` (api/cors.py).
    `api_name` is the supervised worker serving this app: restarting `all`
    asks mdwd to restart it last, once the others run again, so the 202
    answer gets out before this server goes down. `clock` is the wall clock
    of the market's calendar (aware datetimes; default market_hours.utc_now).
    `refresh_token_expiry` gives /metrics the Schwab refresh token's seconds
    left (api/metrics.py). `live` (api/live.py) makes the market-structure endpoints' live fetches
    (None: they answer 503).
    """
    clock = clock or market_hours.utc_now
    app = _JsonBottle(catchall=True)
    for plugin in list(app.plugins):  # we return bytes: no JSON or template plugin per request
        app.uninstall(plugin)
    app.cache = ResponseCache(cache_ttl)
    app.cors = CorsPolicy(cors_origins)
    app.cacheable = frozenset(("/api/watchlist", "/api/whale_flows", "/api/macd_scanner", "/api/vpb_scanner",
                               "/api/ttm_squeeze_scanner", "/api/stats", "/api/last_update", "/api/signals",
                               "/api/cycles", *structure_routes.CACHEABLE))
    registry = metrics.make_registry(status, reader, refresh_token_expiry)

    query, fields = request_query, dataset_fields

    # -- the old service's endpoints ----------------------------------------

    @app.get("/")
    @json_endpoint
    def home():
        """The status page for a browser (api/page.py: Accept names text/html); for every other
        client the old banner, `cache_stats` being /api/stats's `stats`."""
        if wants_html(bottle.request.environ.get("HTTP_ACCEPT")):
            return index()
        return json_answer(200, {"status": "running", "service": SERVICE_NAME, "version": SERVICE_VERSION,
                                 "cache_stats": stats_of_the_store()}, {"Vary": "Accept"})

    @app.get("/health")
    @json_endpoint
    def health():
        problems = health_problems(reader, status, clock())
        if problems:
            return json_answer(503, {"status": "degraded", "problems": problems})
        return json_answer(200, {"status": "healthy"})

    @app.get("/api/watchlist")
    @json_endpoint
    def watchlist():
        order_by, limit, order = V.watchlist_params(query())
        return listing(reader.watchlist(order_by=order_by, limit=limit, order=order), fields("watchlist"))

    @app.get("/api/whale_flows")
    @json_endpoint
    def whale_flows():
        sort_by, limit, hours, order = V.whale_flows_params(query(), status.whale_retention_hours())
        return listing(reader.whale_flows(sort_by=sort_by, limit=limit, hours=hours, order=order), fields("whale_flows"),
                       sort_by=sort_by)

    def scanner(path: str, filters, method: str, aliases=None) -> None:
        dataset = path.rsplit("/", 1)[1]

        @app.get(path)
        @json_endpoint
        def endpoint():
            filter_, echoed, limit = V.scanner_params(query(), filters, aliases)
            return listing(getattr(reader, method)(filter=filter_, limit=limit), fields(dataset), filter=echoed)

    scanner("/api/macd_scanner", V.MACD_FILTERS, "macd")
    scanner("/api/vpb_scanner", V.VPB_FILTERS, "vpb", V.VPB_FILTER_ALIASES)
    scanner("/api/ttm_squeeze_scanner", V.TTM_FILTERS, "ttm")

    @app.get("/api/stats")
    @json_endpoint
    def stats():
        return json_answer(200, {"success": True, "stats": stats_of_the_store()})

    def stats_of_the_store():
        """The old stats (counts, last updates) and, new, the market's state."""
        return {**reader.stats(), "market": market_hours.market_state(clock())}

    @app.get("/api/last_update")
    @json_endpoint
    def last_update():
        rows = status.rows_or_none()
        updates = reader.last_update(stale_after=status.limits(rows), schedules=schedules(rows))
        return json_answer(200, {"success": True, **updates, "market": market_hours.market_state(clock())})

    # -- new endpoints ------------------------------------------------------

    @app.get("/api/signals")
    @json_endpoint
    def signals():
        kind, symbol, since, limit = V.signals_params(query(), H.SIGNAL_KINDS)
        return listing(reader.signals(kind=kind, symbol=symbol, since=since, limit=limit), SIGNAL_FIELDS)

    @app.get("/api/symbol/<symbol:path>")
    @json_endpoint
    def one_symbol(symbol):
        symbol, days = V.symbol(symbol, "the symbol in /api/symbol/<symbol>"), V.symbol_days(query())
        bars = reader.daily_bars(symbol, days + WARMUP_BARS)
        if not bars:
            return json_failure(404, f"no daily bars are stored for {symbol}: the technical scanners fetch those of "
                                 f"the symbols in their `symbols` option")
        data = symbol_series(bars, days)
        return json_answer(200, {"success": True, "symbol": symbol, "count": len(data["date"]), "data": data})

    @app.get("/api/cycles")
    @json_endpoint
    def cycles():
        worker, hours = V.cycles_params(query())
        return json_answer(200, {"success": True, "hours": hours, **_counted(reader.cycles(worker=worker, hours=hours))})

    @app.get("/api/workers")
    @json_endpoint
    def workers():
        rows = [{field: _worker_field(row, field) for field in WORKER_FIELDS} for row in status.rows()]
        return json_answer(200, {"success": True, "count": len(rows), "data": rows})

    @app.post("/api/workers/<name>/restart")
    @json_endpoint
    def restart(name):
        if not token:
            return json_failure(403, "mutating endpoints are disabled: no API token is configured "
                                 "(set [api] token or MDW_API_TOKEN)")
        if not V.token_matches(V.bearer_token(bottle.request.environ.get("HTTP_AUTHORIZATION")), token):
            return json_failure(401, "missing or wrong token: send 'Authorization: Bearer <token>'",
                            {"WWW-Authenticate": 'Bearer realm="mdw"'})
        last = [api_name] if name == ALL_WORKERS else []
        answer = status.restart(name, last=last)
        if answer.get("ok") is True:
            log.info("restart of worker %r requested over the API%s", name,
                     f" ({api_name} last)" if last else "")
            return json_answer(202, {"success": True, "name": name, "status": "restart queued"})
        error = str(answer.get("error") or "the supervisor refused the restart")
        if answer.get("kind") == "unknown_name":
            return json_failure(404, error)  # mdwd's own words: "no worker named 'x'; known: ..."
        return json_failure(409, error)

    structure_routes.install(app, reader, live, clock)

    @app.get("/metrics")
    def prometheus():
        response = bottle.HTTPResponse(body=metrics.render(registry), status=200)
        response.content_type = metrics.CONTENT_TYPE
        return response

    install_page(app, status=status, token=token, refresh_token_expiry=refresh_token_expiry)
    return app


SIGNAL_FIELDS = ("id", "at", "kind", "symbol", "direction", "score", "values")


def _counted(rows: list) -> dict:
    return {"count": len(rows), "data": rows}


def _worker_field(row: dict, field: str) -> Any:
    if field == "quarantined":
        reported = row.get("reported") if isinstance(row.get("reported"), dict) else {}
        return {"items": [q.get("item") for q in reported.get("quarantined") or () if isinstance(q, dict)],
                "total": reported.get("quarantined_total", 0)}
    return row.get(field)
