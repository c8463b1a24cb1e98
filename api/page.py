"""The status page: `GET /` for a browser, its static files, and `GET /api/page`.

`install_page(app, status=..., token=..., refresh_token_expiry=...)` adds the
routes to the API's Bottle app (api/app.py calls it from create_app):

- `GET /static/NAME`: the page's files, shipped in the package (api/static/:
  index.html's script and styles, and uPlot under vendor/ with its licence).
  They are read once, when the app is made, and served from memory with
  their content type, an ETag (answered 304 on If-None-Match) and a
  Cache-Control: a year, immutable, when asked as the page links them
  (`?v=<digest>`, so an upgrade changes every URL), else `no-cache`. Any
  other name is a JSON 404 like every other error of the API.
- `GET /api/page`: what the page needs besides the data endpoints - whether
  restarts are enabled (a token is configured: never the token itself),
  each dataset's staleness limit and the workers that write it (none: a
  dataset nobody writes is no problem; null while mdwd is unreachable),
  each worker's interval and
  heartbeat_timeout (the page shows a worker failing once its last beat is
  older than half its heartbeat_timeout, before the supervisor kills it),
  with [provider] kind = "schwab" the refresh token's seconds left
  (`schwab_token.expires_in_s`, negative once dead, null while the token file
  is missing or does not say; `schwab_token` is null without Schwab), and
  how often the page polls.

`GET /` stays in api/app.py: `wants_html(accept)` says whether to answer
`index()` (the page) or the old JSON banner. Only a client that names
text/html in its Accept header, and wants it more than application/json,
gets the page: browsers do; curl, requests, axios (`*/*`, `application/json`)
and clients sending no Accept keep the JSON. Both answers say `Vary: Accept`.

The page needs no internet: no CDN, no fonts, no build step. Its
Content-Security-Policy allows nothing but this origin.
"""
from __future__ import annotations

import hashlib
import importlib.resources
import logging
import math
from dataclasses import dataclass
from typing import Callable, Optional

import bottle

from .answers import json_answer, json_endpoint, json_failure
from .status import DATASET_WRITER_KIND

__all__ = ["install_page", "wants_html", "index", "load_static", "StaticFile", "POLL_S", "PAGE_FILES"]

log = logging.getLogger("api.page")

POLL_S = 1.5  # the page asks /api/workers, /api/last_update and /api/page this often
INDEX = "index.html"
# The files index.html links, each replaced there by its URL with the digest: "{{page.js}}".
PAGE_FILES = ("page.css", "page.js", "charts.js", "structure.js", "vendor/uPlot.min.css", "vendor/uPlot.iife.min.js")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
TEXT = "text/plain; charset=utf-8"  # LICENSE-uPlot and anything without a known suffix
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class StaticFile:
    name: str
    body: bytes
    content_type: str
    digest: str  # the first 16 hex digits of the body's SHA-256

    @property
    def etag(self) -> str:
        return f'"{self.digest}"'

    @property
    def url(self) -> str:
        return f"/static/{self.name}?v={self.digest}"


def _static_file(name: str, body: bytes) -> StaticFile:
    suffix = name[name.rfind("."):] if "." in name.rsplit("/", 1)[-1] else ""
    return StaticFile(name, body, CONTENT_TYPES.get(suffix, TEXT), hashlib.sha256(body).hexdigest()[:16])


def load_static(root=None) -> dict[str, StaticFile]:
    """Every file under api/static (or `root`), by its name relative to it, index.html with its links filled in."""
    root = root if root is not None else importlib.resources.files("api") / "static"
    files: dict[str, StaticFile] = {}

    def walk(folder, prefix):
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            if entry.is_dir():
                walk(entry, f"{prefix}{entry.name}/")
            else:
                files[prefix + entry.name] = _static_file(prefix + entry.name, entry.read_bytes())

    walk(root, "")
    missing = [name for name in (INDEX, *PAGE_FILES) if name not in files]
    if missing:
        raise FileNotFoundError(f"the page's files are missing from {root}: {', '.join(missing)} "
                                "(an install without the package data?)")
    html = files[INDEX].body.decode("utf-8")
    for name in PAGE_FILES:
        html = html.replace("{{" + name + "}}", files[name].url)
    files[INDEX] = _static_file(INDEX, html.encode("utf-8"))
    return files


def _media_ranges(accept: str):
    """(type, q) for each media range of an Accept header; q is 0 when unreadable."""
    for part in accept.split(","):
        fields = [f.strip() for f in part.split(";")]
        kind, q = fields[0].lower(), 1.0
        for param in fields[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
                if not math.isfinite(q):
                    q = 0.0
        if kind:
            yield kind, q


def wants_html(accept: Optional[str]) -> bool:
    """True when the Accept header names text/html (not just */*) higher than application/json."""
    if not accept or len(accept) > 4096:
        return False
    html = json_ = 0.0
    for kind, q in _media_ranges(accept):
        if kind == "text/html":
            html = max(html, q)
        elif kind == "application/json":
            json_ = max(json_, q)
    return html > json_


def _file_response(item: StaticFile, cache_control: str, environ) -> bottle.HTTPResponse:
    headers = {"ETag": item.etag, "Cache-Control": cache_control, **SECURITY_HEADERS}
    if item.etag in (environ.get("HTTP_IF_NONE_MATCH") or "").replace(" ", "").split(","):
        response = bottle.HTTPResponse(status=304)
    else:
        response = bottle.HTTPResponse(body=item.body, status=200)
        response.content_type = item.content_type
    for name, value in headers.items():
        response.set_header(name, value)
    return response


_FILES: Optional[dict[str, StaticFile]] = None


def _files() -> dict[str, StaticFile]:
    global _FILES
    if _FILES is None:
        _FILES = load_static()
    return _FILES


def index() -> bottle.HTTPResponse:
    """The page itself (GET / for a browser): never cached without asking again."""
    response = _file_response(_files()[INDEX], REVALIDATE, bottle.request.environ)
    response.set_header("Vary", "Accept")
    return response


def install_page(app: bottle.Bottle, *, status, token: str = "",
                 refresh_token_expiry: Optional[Callable[[], Optional[float]]] = None) -> None:
    """Add GET /static/<name> and GET /api/page to `app` (see the module docstring)."""
    files = _files()

    @app.get("/static/<name:path>")
    def static(name):
        item = files.get(name)
        if item is None or name == INDEX:
            shown = name if len(name) <= 100 else name[:100] + "..."
            return json_failure(404, f"no such static file: {shown!r}")
        pinned = bottle.request.query.get("v") == item.digest
        return _file_response(item, IMMUTABLE if pinned else REVALIDATE, bottle.request.environ)

    @app.get("/api/page")
    @json_endpoint
    def page_info():
        rows = status.rows_or_none()
        workers = {row["name"]: {"interval": row.get("interval"), "heartbeat_timeout": row.get("heartbeat_timeout")}
                   for row in rows or () if isinstance(row, dict) and isinstance(row.get("name"), str)}
        return json_answer(200, {
            "success": True,
            "restart_enabled": bool(token),
            "poll_s": POLL_S,
            "supervisor_reachable": rows is not None,
            "datasets": {name: {"stale_after_s": limit, "writers": _writers(rows, name)}
                         for name, limit in status.limits(rows).items()},
            "workers": workers,
            "schwab_token": None if refresh_token_expiry is None
            else {"expires_in_s": _seconds_left(refresh_token_expiry)},
        })


def _writers(rows, dataset: str) -> Optional[list[str]]:
    """The workers that write `dataset` (by kind, stopped ones included), or None when the rows are unknown."""
    if rows is None:
        return None
    kind = DATASET_WRITER_KIND[dataset]
    return sorted(row["name"] for row in rows if isinstance(row, dict) and row.get("kind") == kind
                  and isinstance(row.get("name"), str))


def _seconds_left(refresh_token_expiry) -> Optional[float]:
    try:
        left = refresh_token_expiry()
    except Exception:  # noqa: BLE001 - a bad token file costs this field, not the answer
        log.warning("cannot read the Schwab refresh token's expiry", exc_info=True)
        return None
    if isinstance(left, bool) or not isinstance(left, (int, float)) or not math.isfinite(left):
        return None
    return round(float(left), 1)
