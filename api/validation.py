"""Parsing and checking what a client sends: query parameters and the bearer token.

Every check raises `ParamError` (a ValueError) whose text says what was wrong
and what is allowed; the app turns it into a 400. Unknown query parameters
are ignored (the old dashboard client may send extras); a parameter given
twice takes its first value, as the old Flask service did.

Allowed values for order_by/sort_by/filter come from the store reader, so
the API and the SQL never disagree.
"""
from __future__ import annotations

import hmac
import re
from typing import Mapping
from urllib.parse import parse_qsl

from workers.store.reader import (MACD_FILTERS, MAX_HOURS, MAX_LIMIT, TTM_FILTERS, VPB_FILTERS,
                                  WATCHLIST_ORDERS, WHALE_SORTS)

__all__ = [
    "ParamError", "parse_query", "choice", "bounded_int", "bearer_token", "token_matches",
    "watchlist_params", "whale_flows_params", "scanner_params",
    "MACD_FILTERS", "VPB_FILTERS", "TTM_FILTERS",
]

_MAX_ECHO = 40  # characters of a bad value quoted back in an error
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII digits only; int() would accept '٣', ' 3', '1_0'


class ParamError(ValueError):
    """A request parameter is missing its allowed form; the text says which and what is allowed."""


def _echo(value: str) -> str:
    text = value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "..."
    return repr(text)


def parse_query(query_string: str) -> dict[str, str]:
    """First value of each parameter of a WSGI QUERY_STRING (latin-1 text of raw bytes)."""
    if not query_string:
        return {}
    raw = query_string.encode("latin-1", "replace").decode("utf-8", "replace")
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="replace"):
        params.setdefault(name, value)
    return params


def choice(params: Mapping[str, str], name: str, allowed, default: str) -> str:
    """`params[name]` if it is one of `allowed` (default when absent), else ParamError."""
    value = params.get(name)
    if value is None:
        return default
    if value not in allowed:
        raise ParamError(f"{name} must be one of {', '.join(allowed)}; got {_echo(value)}")
    return value


def bounded_int(params: Mapping[str, str], name: str, high: int, default: int) -> int:
    """`params[name]` as an integer 1..high (default when absent), else ParamError."""
    value = params.get(name)
    if value is None:
        return default
    if _DIGITS.fullmatch(value):
        number = int(value)
        if 1 <= number <= high:
            return number
    raise ParamError(f"{name} must be an integer from 1 to {high}; got {_echo(value)}")


def watchlist_params(params: Mapping[str, str]) -> tuple[str, int]:
    return (choice(params, "order_by", WATCHLIST_ORDERS, "daily_change_pct"),
            bounded_int(params, "limit", MAX_LIMIT, 20))


def whale_flows_params(params: Mapping[str, str]) -> tuple[str, int, int]:
    return (choice(params, "sort_by", WHALE_SORTS, "score"),
            bounded_int(params, "limit", MAX_LIMIT, 10),
            bounded_int(params, "hours", MAX_HOURS, 6))


def scanner_params(params: Mapping[str, str], filters) -> tuple[str, int]:
    return (choice(params, "filter", filters, "all"),
            bounded_int(params, "limit", MAX_LIMIT, 20))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header (scheme case-insensitive), or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison; never true when no token is configured."""
    if not expected or given is None:
        return False
    # A WSGI header is the raw bytes decoded as latin-1; get the bytes back and compare them
    # with the configured token's UTF-8 (compare_digest refuses non-ASCII str).
    try:
        raw = given.encode("latin-1")
    except UnicodeEncodeError:
        raw = given.encode("utf-8", "surrogatepass")
    return hmac.compare_digest(raw, expected.encode("utf-8", "surrogatepass"))
