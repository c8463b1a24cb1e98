"""The HTTP layer's side of the store: the queries of API.md, in SQL.

Each call borrows a connection from a small pool (one connection is never
used by two threads at once) and returns it afterwards, so a StoreReader can
be shared by all threads of a threaded server without leaking a connection
per short-lived thread. Connections are `PRAGMA query_only`. In WAL mode a
reader does not wait for a writer: it reads the last committed snapshot.

Rows come back as lists of plain dicts holding bool, int, float, str or None.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import sqlite3
import threading
from typing import Any, Callable, Iterator, Mapping, Optional

from . import history as H
from . import rows as R
from . import schema
from . import structure as S
from .errors import SchemaTooNewError, StoreError, describe_sqlite_error
from .writer import utc_now

__all__ = ["StoreReader", "DATASET_NAMES",
           "WATCHLIST_ORDERS", "WHALE_SORTS", "MACD_FILTERS", "VPB_FILTERS", "TTM_FILTERS", "CYCLE_FILTERS"]

DATASET_NAMES = tuple(R.DATASETS)
DEFAULT_READER_BUSY_TIMEOUT_MS = 1000
MAX_LIMIT = 1000
# A whale-flow window reaching back further than this is this long: nothing was detected
# before, and the cutoff stays a four-digit year (timestamps compare as text).
MAX_WINDOW_HOURS = 1000 * 366 * 24
_MAX_IDLE = 8

# Allowed argument -> SQL (WHERE, ORDER BY). rowid keeps the writer's order last. In the orders of
# the watchlist and the whale flows, {d} is the direction (`order`: desc by default, as the old
# service sorted) of the column asked for; the tie-breakers keep theirs.
ORDERS = {"desc": "DESC", "asc": "ASC"}
WATCHLIST_ORDERS = {
    "daily_change_pct": "daily_change_pct {d}, symbol",
    "volume": "volume {d}, symbol",
    "symbol": "symbol {d}",
    "price": "price {d}, symbol",
}
WHALE_SORTS = {
    "score": "whale_score {d}, detected_at DESC, rowid",
    "time": "detected_at {d}, whale_score DESC, rowid",
}
MACD_FILTERS = {
    "all": ("1", "scanned_at DESC, rowid"),
    "bullish": ("bullish_cross = 1", "price_change_pct DESC, rowid"),
    "bearish": ("bearish_cross = 1", "price_change_pct ASC, rowid"),
}
VPB_FILTERS = {
    "all": ("1", "scanned_at DESC, rowid"),
    "bullish": ("buy_signal = 1", "volume_surge_pct DESC, rowid"),
    "bearish": ("sell_signal = 1", "volume_surge_pct DESC, rowid"),
}
TTM_FILTERS = {
    "all": ("1", "scanned_at DESC, rowid"),
    "active": ("signal = 'active'", "squeeze_duration DESC, momentum DESC, rowid"),
    "fired": ("signal = 'fired'", "fire_date DESC, rowid"),
    "bullish": ("fire_direction = 'bullish'", "fire_date DESC, rowid"),
    "bearish": ("fire_direction = 'bearish'", "fire_date DESC, rowid"),
}

# The old service's order: peaks, bottoms, approaching peaks, approaching bottoms; strongest first.
_CYCLE_ORDER = ("CASE signal_type WHEN 'PEAK' THEN 0 WHEN 'BOTTOM' THEN 1 WHEN 'APPROACHING_PEAK' THEN 2 "
                "ELSE 3 END, strength DESC, symbol")
CYCLE_FILTERS = {
    "all": ("signal_type != 'NONE'", _CYCLE_ORDER),
    "peak": ("signal_type = 'PEAK'", _CYCLE_ORDER),
    "bottom": ("signal_type = 'BOTTOM'", _CYCLE_ORDER),
    "approaching_peak": ("signal_type = 'APPROACHING_PEAK'", _CYCLE_ORDER),
    "approaching_bottom": ("signal_type = 'APPROACHING_BOTTOM'", _CYCLE_ORDER),
    "buy": ("signal_type IN ('BOTTOM', 'APPROACHING_BOTTOM')", _CYCLE_ORDER),
    "sell": ("signal_type IN ('PEAK', 'APPROACHING_PEAK')", _CYCLE_ORDER),
}


def _choice(name: str, value: Any, allowed: Mapping[str, Any]) -> Any:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return allowed[value]


def _bounded(name: str, value: Any, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name} must be an integer from 1 to {high}; got {value!r}")
    return value


def _at_least_one(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    return value


class StoreReader:
    """Reads the datasets from `<state_dir>/market_data.db` for the API.

    Creating it creates/migrates the database if needed (so the API can
    start before any worker); raises StoreError (SchemaTooNewError if the
    database is newer than this code). `now` is the injected UTC clock used
    for the whale-flow window and last_update ages.
    """

    def __init__(self, state_dir, *, now: Callable[[], dt.datetime] = utc_now,
                 busy_timeout_ms: int = DEFAULT_READER_BUSY_TIMEOUT_MS):
        self._now = now
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._lock = threading.Lock()
        self._idle: list[sqlite3.Connection] = []
        self._closed = False
        self.path: Optional[str] = None
        with self._failures(None):
            self.path = str(schema.database_path(state_dir))
            conn = schema.connect(self.path, busy_timeout_ms=self._busy_timeout_ms)
            try:
                schema.migrate(conn, path=self.path)
            finally:
                conn.close()

    # -- connections --------------------------------------------------------

    def close(self) -> None:
        """Close the idle connections; borrowed ones close when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _new_connection(self) -> sqlite3.Connection:
        conn = schema.connect(self.path, busy_timeout_ms=self._busy_timeout_ms, query_only=True)
        try:
            schema.check_version(conn, path=self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _failures(self, dataset: Optional[str]) -> Iterator[None]:
        try:
            yield
        except SchemaTooNewError as exc:
            raise SchemaTooNewError(exc.found, exc.supported, path=exc.path,
                                    dataset=dataset) from None
        except (sqlite3.Error, OSError) as exc:
            cause = describe_sqlite_error(exc, self._busy_timeout_ms)
            raise StoreError(dataset, f"read failed: {cause}", path=self.path) from exc

    @contextlib.contextmanager
    def _connection(self, dataset: Optional[str]) -> Iterator[sqlite3.Connection]:
        """Borrow a pooled connection; a connection that failed is closed, not reused."""
        with self._failures(dataset):
            with self._lock:
                if self._closed:
                    raise StoreError(dataset, "the reader is closed", path=self.path)
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._new_connection()
            try:
                yield conn
            except BaseException:
                conn.close()
                raise
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            with self._lock:
                keep = not self._closed and len(self._idle) < _MAX_IDLE
                if keep:
                    self._idle.append(conn)
            if not keep:
                conn.close()

    def _select(self, dataset: str, where: str, order: str, limit: int,
                params: tuple = ()) -> list[dict[str, Any]]:
        names = ", ".join(c.name for c in R.DATASETS[dataset])
        sql = f"SELECT {names} FROM {dataset} WHERE {where} ORDER BY {order} LIMIT ?"
        with self._connection(dataset) as conn:
            fetched = conn.execute(sql, (*params, limit)).fetchall()
        return [R.from_db_row(dataset, row) for row in fetched]

    # -- the endpoints ------------------------------------------------------

    def watchlist(self, order_by: str = "daily_change_pct", limit: int = 20, order: str = "desc") -> list[dict]:
        """Rows by `order_by` (daily_change_pct, volume, symbol, price), descending unless `order` is asc."""
        sql = _choice("order_by", order_by, WATCHLIST_ORDERS).format(d=_choice("order", order, ORDERS))
        return self._select("watchlist", "1", sql, _bounded("limit", limit, MAX_LIMIT))

    def whale_flows(self, sort_by: str = "score", limit: int = 10, hours: int = 6, order: str = "desc") -> list[dict]:
        """Flows detected in the last `hours` (any whole number >= 1), by whale_score or detected_at,
        descending unless `order` is asc. The API clamps `hours` to the retention before asking (API.md)."""
        order = _choice("sort_by", sort_by, WHALE_SORTS).format(d=_choice("order", order, ORDERS))
        limit = _bounded("limit", limit, MAX_LIMIT)
        hours = min(_at_least_one("hours", hours), MAX_WINDOW_HOURS)
        cutoff = R.format_ts(R.utc(self._now()) - dt.timedelta(hours=hours))
        return self._select(R.WHALE_FLOWS, "detected_at >= ?", order, limit, (cutoff,))

    def macd(self, filter: str = "all", limit: int = 20) -> list[dict]:
        """all: newest scan first; bullish/bearish crosses by price_change_pct desc/asc."""
        where, order = _choice("filter", filter, MACD_FILTERS)
        return self._select("macd_scanner", where, order, _bounded("limit", limit, MAX_LIMIT))

    def vpb(self, filter: str = "all", limit: int = 20) -> list[dict]:
        """all: newest first; bullish=buy_signal, bearish=sell_signal by volume_surge_pct desc."""
        where, order = _choice("filter", filter, VPB_FILTERS)
        return self._select("vpb_scanner", where, order, _bounded("limit", limit, MAX_LIMIT))

    def ttm(self, filter: str = "all", limit: int = 20) -> list[dict]:
        """active by squeeze_duration, momentum desc; fired/bullish/bearish by fire_date desc."""
        where, order = _choice("filter", filter, TTM_FILTERS)
        return self._select("ttm_squeeze_scanner", where, order,
                            _bounded("limit", limit, MAX_LIMIT))

    def cycle_scanner(self, filter: str = "all", limit: int = 20) -> list[dict]:
        """all: every symbol with a signal; peak, bottom, approaching_*; buy = bottoms and approaching
        bottoms, sell = peaks and approaching peaks; peaks first, then by strength."""
        where, order = _choice("filter", filter, CYCLE_FILTERS)
        return self._select("cycle_scanner", where, order, _bounded("limit", limit, MAX_LIMIT))

    # -- the market structure (structure.py) -----------------------------------

    def _structure(self, what: str, query: Callable, *args) -> Any:
        with self._connection(what) as conn:
            conn.execute("BEGIN")  # one snapshot for the whole answer
            try:
                return query(conn, *args)
            finally:
                conn.execute("COMMIT")

    def latest_sentiment(self) -> list[dict]:
        """Each symbol's latest market_sentiment row."""
        return self._structure("market_sentiment", S.latest_sentiment)

    def sentiment_history(self, symbol: Optional[str], hours: int, limit: int = MAX_LIMIT * 10) -> list[dict]:
        since = R.format_ts(R.utc(self._now()) - dt.timedelta(hours=hours))
        return self._structure("market_sentiment", S.sentiment_history, symbol, since, limit)

    def structure_window(self, minutes: float) -> tuple[list[dict], list[dict]]:
        """(whale flows, skew rows) of the last `minutes`, one snapshot (top opportunities, fear/greed)."""
        since = R.format_ts(R.utc(self._now()) - dt.timedelta(minutes=minutes))
        return self._structure("skew_metrics", lambda conn: (S.whales_since(conn, since), S.skew_since(conn, since)))

    def latest_skew(self, symbol: Optional[str] = None, limit: int = MAX_LIMIT) -> list[dict]:
        return self._structure("skew_metrics", S.latest_skew, symbol, _bounded("limit", limit, MAX_LIMIT))

    def oi_flows(self, symbol: Optional[str] = None, limit: int = 50) -> list[dict]:
        return self._structure("oi_flows", S.oi_flows, symbol, _bounded("limit", limit, MAX_LIMIT))

    def stored_key_levels(self, symbol: str, expiry: str) -> Optional[dict]:
        return self._structure("key_levels", S.key_levels, symbol, expiry)

    def chains(self) -> list[dict]:
        """The stored option chains: {symbol, expiry, fetched_at, contracts}."""
        return self._structure("option_chains", S.chain_list)

    def chain(self, symbol: str, expiry: Optional[str]) -> list[tuple]:
        """A stored chain's contracts (structure.CHAIN_COLUMNS); every expiration of `symbol` with None."""
        return self._structure("option_chains", S.chain_rows, symbol, expiry)

    def stats(self) -> dict[str, Any]:
        """Row counts per dataset and every last_update row, newest first (one snapshot)."""
        with self._connection(None) as conn:
            conn.execute("BEGIN")
            counts = {f"{name}_count": conn.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
                      for name in DATASET_NAMES}
            updates = conn.execute(
                "SELECT key, value, updated_at FROM last_update "
                "ORDER BY updated_at DESC, key").fetchall()
            conn.execute("COMMIT")
        counts["last_updates"] = [
            {"key": str(k), "value": str(v), "updated_at": str(u)} for k, v, u in updates]
        return counts

    def last_update(self, stale_after: Optional[Mapping[str, float]] = None,
                    schedules: Optional[Mapping[str, Any]] = None) -> dict[str, Optional[dict[str, Any]]]:
        """Per dataset {value, updated_at, age_s, stale}, or None if never written.

        `stale_after` maps a dataset to the age in seconds beyond which it is
        stale; a dataset not in it is never stale. `schedules` maps a dataset
        to its writer's schedule (workers/market_hours.py: anything with
        `open_seconds(start, end)`): only the part of its age inside it counts
        toward `stale`; `age_s` stays the whole age. Without one, all of it counts.
        """
        limits, schedules = dict(stale_after or {}), dict(schedules or {})
        for what, given in (("stale_after", limits), ("schedules", schedules)):
            unknown = sorted(set(given) - set(DATASET_NAMES))
            if unknown:
                raise ValueError(f"{what} has unknown dataset {unknown[0]!r} "
                                 f"(allowed: {', '.join(DATASET_NAMES)})")
        now = R.utc(self._now())
        with self._connection(None) as conn:
            found = {key: (value, updated_at) for key, value, updated_at in conn.execute(
                "SELECT key, value, updated_at FROM last_update WHERE key IN (%s)"
                % ", ".join("?" for _ in DATASET_NAMES), DATASET_NAMES)}
        out: dict[str, Optional[dict[str, Any]]] = {}
        for name in DATASET_NAMES:
            if name not in found:
                out[name] = None
                continue
            value, updated_at = found[name]
            written = _moment(value, updated_at)
            age = round(max(0.0, (now - written).total_seconds()), 3)
            counted = schedules[name].open_seconds(written, now) if name in schedules else age
            limit = limits.get(name)
            out[name] = {"value": str(value), "updated_at": str(updated_at), "age_s": age,
                         "stale": bool(limit is not None and counted > limit)}
        return out


    # -- history (history.py) and the bars cache -----------------------------

    def signals(self, kind: Optional[str] = None, symbol: Optional[str] = None,
                since: Optional[dt.datetime] = None, limit: int = 100,
                after_id: Optional[int] = None) -> list[dict]:
        """Recorded signals {id, at, kind, symbol, direction, score, values}: newest first, or in id
        order after `after_id`. `since` is an aware datetime; `kind` one of history.SIGNAL_KINDS."""
        if kind is not None:
            _choice("kind", kind, dict.fromkeys(H.SIGNAL_KINDS))
        stamp = R.format_ts(since) if since is not None else None
        with self._connection("signals") as conn:
            return H.select_signals(conn, kind=kind, symbol=symbol, since=stamp,
                                    limit=_bounded("limit", limit, MAX_LIMIT), after_id=after_id)

    def cycles(self, worker: Optional[str] = None, hours: float = 6.0, limit: int = 5000) -> list[dict]:
        """Cycles {worker, at, duration_s, ok} of the last `hours`, oldest first."""
        since = R.format_ts(R.utc(self._now()) - dt.timedelta(hours=float(hours)))
        with self._connection("cycles") as conn:
            return H.select_cycles(conn, worker=worker, since=since, limit=limit)

    def daily_bars(self, symbol: str, days: int) -> list[tuple]:
        """The last `days` stored daily bars of `symbol`, oldest first: (date, open, high, low, close, volume)."""
        with self._connection("daily_bars") as conn:
            rows = conn.execute("SELECT date, open, high, low, close, volume FROM daily_bars WHERE symbol = ? "
                                "ORDER BY date DESC LIMIT ?", (symbol, int(days))).fetchall()
        return rows[::-1]


def _moment(value: str, updated_at: str) -> dt.datetime:
    """When a last_update row was written: its ISO value, else its updated_at."""
    for text in (value, updated_at):
        try:
            moment = dt.datetime.fromisoformat(str(text))
        except ValueError:
            continue
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.timezone.utc)
        return moment.astimezone(dt.timezone.utc)
    return dt.datetime.min.replace(tzinfo=dt.timezone.utc)
