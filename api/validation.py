"""Parsing and checking what a client sends: query parameters and the bearer token.

Every check raises `ParamError` (a ValueError) whose text says what was wrong
and what is allowed; the app turns it into a 400. Unknown query parameters
are ignored (the old dashboard client may send extras); a parameter given
twice takes its first value, as the old Flask service did.

Allowed values for order_by/sort_by/filter come from the store reader, so
the API and the SQL never disagree. The only other values accepted are those
the old callers are known to send (API.md): `filter=buy`/`sell` on
/api/vpb_scanner (VPB_FILTER_ALIASES), and a whale-flow `hours` above the
retention (720, 999999: "everything kept"), clamped to it (`window_hours`).
"""
from __future__ import annotations

import datetime as dt
import hmac
import re
from typing import Mapping
from urllib.parse import parse_qsl

from workers.store.reader import (CYCLE_FILTERS, MACD_FILTERS, MAX_LIMIT, ORDERS, TTM_FILTERS, VPB_FILTERS,
                                  WATCHLIST_ORDERS, WHALE_SORTS)

__all__ = [
    "ParamError", "parse_query", "choice", "bounded_int", "window_hours", "bearer_token", "token_matches",
    "watchlist_params", "whale_flows_params", "scanner_params", "output_format", "symbol", "moment",
    "signals_params", "symbol_days", "cycles_params", "required_symbol", "expiry", "timeframe",
    "sentiment_history_params", "CYCLE_FILTERS", "TIMEFRAMES",
    "MACD_FILTERS", "VPB_FILTERS", "TTM_FILTERS", "VPB_FILTER_ALIASES",
]

# The seed system's AI copilot page and market commentary bot ask the VPB scanner for
# filter=buy and filter=sell; they mean the breakouts and the breakdowns.
VPB_FILTER_ALIASES = {"buy": "bullish", "sell": "bearish"}

_MAX_ECHO = 40  # characters of a bad value quoted back in an error
_DIGITS = re.compile(r"[0-9]{1,9}")  # ASCII digits only; int() would accept '٣', ' 3', '1_0'
_ANY_DIGITS = re.compile(r"[0-9]+")


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


def choice(params: Mapping[str, str], name: str, allowed, default: str,
           aliases: Mapping[str, str] | None = None) -> str:
    """`params[name]` if it is one of `allowed` (default when absent), the value an alias
    stands for, else ParamError."""
    value = params.get(name)
    if value is None:
        return default
    aliases = aliases or {}
    if value in aliases:
        return aliases[value]
    if value not in allowed:
        named = [*allowed, *(f"{alias} (= {meant})" for alias, meant in aliases.items())]
        raise ParamError(f"{name} must be one of {', '.join(named)}; got {_echo(value)}")
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


def window_hours(params: Mapping[str, str], name: str, retention_hours: int, default: int) -> int:
    """`params[name]` as a whole number of hours >= 1 (default when absent), clamped to
    `retention_hours`: no flow is kept longer, so a longer window asks for everything kept.
    Anything but ASCII digits, or zero, is a ParamError."""
    value = params.get(name)
    if value is None:
        return min(default, retention_hours)
    if _ANY_DIGITS.fullmatch(value):
        significant = value.lstrip("0")
        if len(significant) > len(str(retention_hours)):  # more digits than the retention: above it
            return retention_hours
        if significant:
            return min(int(significant), retention_hours)
    raise ParamError(f"{name} must be an integer >= 1 (a window longer than the retention, {retention_hours}, "
                     f"is cut to it); got {_echo(value)}")


def watchlist_params(params: Mapping[str, str]) -> tuple[str, int, str]:
    """(order_by, limit, order)."""
    return (choice(params, "order_by", WATCHLIST_ORDERS, "daily_change_pct"),
            bounded_int(params, "limit", MAX_LIMIT, 20), choice(params, "order", ORDERS, "desc"))


def whale_flows_params(params: Mapping[str, str], retention_hours: int) -> tuple[str, int, int, str]:
    """(sort_by, limit, hours, order); `retention_hours` caps hours (api/status.py: whale_retention_hours)."""
    return (choice(params, "sort_by", WHALE_SORTS, "score"),
            bounded_int(params, "limit", MAX_LIMIT, 10),
            window_hours(params, "hours", retention_hours, 6), choice(params, "order", ORDERS, "desc"))


def scanner_params(params: Mapping[str, str], filters,
                   aliases: Mapping[str, str] | None = None) -> tuple[str, str, int]:
    """(the filter to apply, the filter to echo, limit).

    An alias is echoed as the caller sent it, as the old service echoed every filter:
    `filter=buy` applies bullish and answers `"filter": "buy"`.
    """
    applied = choice(params, "filter", filters, "all", aliases)
    return applied, params.get("filter", applied), bounded_int(params, "limit", MAX_LIMIT, 20)


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


# -- history, one symbol, export ---------------------------------------------

FORMATS = ("json", "csv")
_SYMBOL = re.compile(r"[A-Z0-9][A-Z0-9.$/^-]{0,11}")
_WORKER = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_SYMBOL_DAYS = 1000
MAX_CYCLE_HOURS = 48


def output_format(params: Mapping[str, str]) -> str:
    """`format`: json (the default) or csv."""
    return choice(params, "format", FORMATS, "json")


def symbol(value: str | None, name: str = "symbol") -> str | None:
    """A ticker (letters, digits, . $ / ^ -, up to 12), upper-cased; None when absent."""
    if value is None:
        return None
    upper = value.strip().upper()
    if not _SYMBOL.fullmatch(upper):
        raise ParamError(f"{name} must be a ticker symbol (letters, digits, '.', '$', '/', '^', '-'; up to 12 "
                         f"characters); got {_echo(value)}")
    return upper


def moment(params: Mapping[str, str], name: str):
    """`params[name]` as an aware UTC datetime: ISO 8601, a date or a date and time, with Z or an offset
    (none means UTC); None when absent."""
    value = params.get(name)
    if value is None:
        return None
    text = value.strip()
    try:
        parsed = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise ParamError(f"{name} must be an ISO 8601 date or time, e.g. 2026-12-01 or 2026-12-01T14:30:00Z; "
                         f"got {_echo(value)}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    if not 1970 <= parsed.year <= 9998:
        raise ParamError(f"{name} must be a time between 1970 and 9998; got {_echo(value)}")
    return parsed.astimezone(dt.timezone.utc)


def signals_params(params: Mapping[str, str], kinds) -> tuple:
    """(kind or None, symbol or None, since or None, limit) of /api/signals."""
    kind = choice(params, "kind", kinds, "") or None
    return kind, symbol(params.get("symbol")), moment(params, "since"), bounded_int(params, "limit", MAX_LIMIT, 100)


def symbol_days(params: Mapping[str, str]) -> int:
    """`days` of /api/symbol/<SYMBOL>: the daily bars to answer, 1..1000, default 120."""
    return bounded_int(params, "days", MAX_SYMBOL_DAYS, 120)


def cycles_params(params: Mapping[str, str]) -> tuple:
    """(worker or None, hours) of /api/cycles; hours 1..48 (the history's retention), default 6."""
    worker = params.get("worker")
    if worker is not None and not _WORKER.fullmatch(worker):
        raise ParamError(f"worker must be a worker's name (letters, digits, '_', '-'); got {_echo(worker)}")
    return worker, bounded_int(params, "hours", MAX_CYCLE_HOURS, 6)


# -- the market structure ------------------------------------------------------

TIMEFRAMES = ("intraday", "daily")
MAX_SENTIMENT_HOURS = 24 * 30  # market_sentiment's default retention
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def required_symbol(params: Mapping[str, str]) -> str:
    if not params.get("symbol"):
        raise ParamError("symbol is required: a ticker symbol such as SPY")
    return symbol(params["symbol"])


def expiry(params: Mapping[str, str], allow_all: bool) -> str:
    """`expiry`, required: YYYY-MM-DD, or (where allowed) `all`: every stored expiration together."""
    value = params.get("expiry")
    allowed = "an expiration date YYYY-MM-DD" + (" or all (every stored expiration together)" if allow_all else "")
    if not value:
        raise ParamError(f"expiry is required: {allowed}")
    if allow_all and value == "all":
        return value
    if _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    raise ParamError(f"expiry must be {allowed}; got {_echo(value)}")


def timeframe(params: Mapping[str, str]) -> str:
    return choice(params, "timeframe", TIMEFRAMES, "intraday")


def sentiment_history_params(params: Mapping[str, str]) -> tuple:
    """(symbol or None, hours 1..720 (default 24)) of /api/market_sentiment/history."""
    return symbol(params.get("symbol")), bounded_int(params, "hours", MAX_SENTIMENT_HOURS, 24)
