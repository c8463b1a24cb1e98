"""Cross-origin requests from browsers (API.md "Browsers"): who may read what, as response headers.

The old service sent `Access-Control-Allow-Origin: *` (flask-cors with its
defaults) and a browser dashboard served from another origin (the seed's
trading-hub) reads the API through it. `[api] cors_origins` (default ["*"])
says who may:

- "*": any origin may GET (and HEAD) and read the answer, which carries
  `Access-Control-Allow-Origin: *` (with or without an Origin header, as the
  old service sent it). Never POST, and never an Authorization header: a page
  on any site must not drive the mutating endpoints.
- an origin listed explicitly ("https://ops.example.com", scheme://host[:port]):
  GET, and POST with Authorization too; its answers name that origin and say
  `Vary: Origin` (so does every answer while any origin is listed).
- a same-origin request (its Origin is this server's own scheme://Host) is not
  cross-origin and needs no listing.

A preflight (OPTIONS with Origin and Access-Control-Request-Method) is answered
204 with what the origin may do, or 403 naming what it may not and how to allow
it. A cross-origin POST (or any method but GET/HEAD) from an origin not listed
is refused 403 before it reaches an endpoint, since a browser sends a "simple"
POST without asking first. A plain OPTIONS is answered 204 with `Allow`.
`CorsPolicy` only decides; api/app.py applies its answers in front of the router
and the response cache, so cached answers get the headers of each request.
"""
from __future__ import annotations

import re
from typing import Iterable, Mapping, Optional

__all__ = ["CorsPolicy", "ANY_ORIGIN", "SAFE_METHODS", "PREFLIGHT_MAX_AGE_S"]

ANY_ORIGIN = "*"
SAFE_METHODS = ("GET", "HEAD")
PREFLIGHT_MAX_AGE_S = 600  # browsers may reuse a preflight's answer this long
ALLOW_ORIGIN = "Access-Control-Allow-Origin"
VARY_ORIGIN = ("Vary", "Origin")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an RFC 9110 token
_MAX_ECHO = 100


def _echo(value: str) -> str:
    return repr(value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "...")


class CorsPolicy:
    """The `[api] cors_origins` list (checked by workers/kinds.py), applied to WSGI requests."""

    def __init__(self, origins: Iterable[str] = (ANY_ORIGIN,)):
        origins = list(origins)
        self.any_origin = ANY_ORIGIN in origins
        self.listed = frozenset(o.lower() for o in origins if o != ANY_ORIGIN)

    # -- what a request is ------------------------------------------------------------------

    def _is_listed(self, origin: str) -> bool:
        return origin.lower() in self.listed  # scheme and host are case-insensitive

    @staticmethod
    def _is_same_origin(origin: str, environ: Mapping) -> bool:
        own = f"{environ.get('wsgi.url_scheme', 'http')}://{environ.get('HTTP_HOST', '')}"
        return origin.lower() == own.lower()

    def _trusted(self, origin: str, environ: Mapping) -> bool:
        return self._is_listed(origin) or self._is_same_origin(origin, environ)

    def _vary(self) -> list[tuple[str, str]]:
        return [VARY_ORIGIN] if self.listed else []

    # -- actual requests ------------------------------------------------------------------------

    def refusal(self, environ: Mapping) -> Optional[str]:
        """Why a request may not reach an endpoint (answer 403), or None: a cross-origin
        POST, PUT, ... from an origin not listed."""
        origin, method = environ.get("HTTP_ORIGIN"), environ.get("REQUEST_METHOD", "")
        if not origin or method in SAFE_METHODS or method == "OPTIONS" or self._trusted(origin, environ):
            return None
        return (f"origin {_echo(origin)} may not {method[:20]} here: only GET is open to other origins; "
                "list the origin in [api] cors_origins to allow POST and Authorization")

    def response_headers(self, environ: Mapping) -> list[tuple[str, str]]:
        """The CORS headers of the answer to an actual (not preflight) request."""
        origin, method = environ.get("HTTP_ORIGIN"), environ.get("REQUEST_METHOD", "")
        if origin and self._is_listed(origin):
            return [(ALLOW_ORIGIN, origin), VARY_ORIGIN]
        if self.any_origin and method in SAFE_METHODS:
            return [(ALLOW_ORIGIN, ANY_ORIGIN), *self._vary()]
        return self._vary()

    # -- OPTIONS --------------------------------------------------------------------------------

    def options(self, environ: Mapping, methods: Iterable[str]) -> tuple[int, list[tuple[str, str]], Optional[str]]:
        """(status, headers, error or None) for an OPTIONS request on a path answering `methods`."""
        methods = list(methods)
        origin = environ.get("HTTP_ORIGIN")
        requested = (environ.get("HTTP_ACCESS_CONTROL_REQUEST_METHOD") or "").strip().upper()
        if not origin or not requested:  # not a preflight: what the path answers
            return 204, [("Allow", ", ".join([*methods, "OPTIONS"]))], None
        if requested not in methods:
            return 405, [], (f"a preflight for {requested[:20]}, but this path answers "
                             f"{', '.join(methods)}")
        headers = _requested_headers(environ.get("HTTP_ACCESS_CONTROL_REQUEST_HEADERS") or "")
        if self._trusted(origin, environ):
            allow_origin, allowed = origin, methods
        else:
            error = self._preflight_refusal(origin, requested, headers)
            if error is not None:
                return 403, self._vary(), error
            allow_origin, allowed = ANY_ORIGIN, [m for m in methods if m in SAFE_METHODS]
        answer = [(ALLOW_ORIGIN, allow_origin), ("Access-Control-Allow-Methods", ", ".join(allowed)),
                  ("Access-Control-Max-Age", str(PREFLIGHT_MAX_AGE_S))]
        if headers:
            answer.append(("Access-Control-Allow-Headers", ", ".join(headers)))
        return 204, answer + ([VARY_ORIGIN] if self.listed else []), None

    def _preflight_refusal(self, origin: str, method: str, headers: list[str]) -> Optional[str]:
        """Why an origin that is not listed may not do what its preflight asks, or None."""
        how = "list the origin in [api] cors_origins"
        if not self.any_origin:
            listed = ", ".join(sorted(self.listed)) or "none"
            return f"origin {_echo(origin)} is not allowed ([api] cors_origins lists {listed}); {how}"
        if method not in SAFE_METHODS:
            return f"origin {_echo(origin)} may only GET here, not {method[:20]}; {how} to allow it"
        if "authorization" in headers:
            return f"origin {_echo(origin)} may not send Authorization; {how} to allow it"
        return None


def _requested_headers(value: str) -> list[str]:
    """The header names of Access-Control-Request-Headers, lower-cased; anything not a name is dropped."""
    names = (name.strip().lower() for name in value.split(","))
    return list(dict.fromkeys(name for name in names if _HEADER_NAME.fullmatch(name)))
