"""The workers' side of the store: one transaction per cycle.

A worker computes its whole result first, then hands it to the writer, which
validates it (RowError, before the database is touched) and writes it in ONE
short BEGIN IMMEDIATE ... COMMIT together with its `last_update` row. A reader
therefore sees the previous complete result or the new one, never a mix, and
a SIGKILL at any point leaves the last committed result (WAL + rollback).

Whale flows are not a snapshot but a de-duplicated history, see
`record_whale_flows`. The signals in a scanner's result are recorded in the
same transaction (workers/store/history.py), and every cycle by `record_cycle`.

A StoreWriter holds one connection and is meant for one worker thread.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sqlite3
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional

from . import history as H
from . import rows as R
from . import schema
from .errors import SchemaTooNewError, StoreError, describe_sqlite_error

__all__ = ["StoreWriter", "WhaleFlowsResult", "utc_now"]

log = logging.getLogger(__name__)

DEFAULT_WRITER_BUSY_TIMEOUT_MS = 2000


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class WhaleFlowsResult(NamedTuple):
    inserted: int  # contracts not seen before on their UTC day
    updated: int   # sightings merged into an existing row of the same day
    expired: int   # rows deleted for being older than the retention


def _insert_sql(dataset: str) -> str:
    names = [c.name for c in R.DATASETS[dataset]]
    return (f"INSERT INTO {dataset} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})")


# The de-dup key (also the unique index whale_flows_contract_day of schema v3).
_WHALE_KEY = ("symbol", "type", "strike", "expiry")


def _whale_upsert_sql() -> str:
    """Insert a sighting, or merge it into the same contract's row of its UTC day.

    The merged row takes the values of whichever sighting is newer (by
    detected_at), so a late-arriving older sighting never overwrites fresher
    numbers; detected_at becomes the newest sighting's time.
    """
    names = [c.name for c in R.DATASETS[R.WHALE_FLOWS]]
    newer = "excluded.detected_at >= whale_flows.detected_at"
    sets = ", ".join(
        f"{n} = CASE WHEN {newer} THEN excluded.{n} ELSE whale_flows.{n} END"
        for n in names if n not in _WHALE_KEY)
    return (_insert_sql(R.WHALE_FLOWS)
            + f" ON CONFLICT ({', '.join(_WHALE_KEY)}, substr(detected_at, 1, 10))"
            + f" DO UPDATE SET {sets}")


_LAST_UPDATE_SQL = (
    "INSERT INTO last_update (key, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")


class StoreWriter:
    """Writes the scanner datasets into `<state_dir>/market_data.db`.

    `now` returns an aware UTC datetime (injected so tests are exact).
    `busy_timeout_ms` bounds how long a write waits for another writer before
    raising StoreError. `on_connect(conn)` is called on every new connection
    after the pragmas (to add e.g. PRAGMA max_page_count or a trace callback).
    `signal_retention_days`: how long this writer's kinds of signal are kept.
    The connection is opened on first use (or by `open()`) and thrown away
    after any failure, so the next call starts afresh once the cause is gone.
    """

    def __init__(self, state_dir, *, now: Callable[[], dt.datetime] = utc_now,
                 busy_timeout_ms: int = DEFAULT_WRITER_BUSY_TIMEOUT_MS,
                 on_connect: Optional[Callable[[sqlite3.Connection], None]] = None,
                 signal_retention_days: float = H.DEFAULT_SIGNAL_RETENTION_DAYS):
        if isinstance(signal_retention_days, bool) or not isinstance(signal_retention_days, (int, float)) \
                or not signal_retention_days > 0:
            raise ValueError(f"signal_retention_days must be a number of days > 0, got {signal_retention_days!r}")
        self.signal_retention_days = float(signal_retention_days)
        self._state_dir = state_dir
        self._now = now
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._on_connect = on_connect
        self._conn: Optional[sqlite3.Connection] = None
        self.path: Optional[str] = None

    # -- connection ---------------------------------------------------------

    def open(self) -> "StoreWriter":
        """Open and migrate the database now; raises StoreError."""
        with self._failures(None):
            self._connection()
        return self

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> "StoreWriter":
        return self.open()

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path = str(schema.database_path(self._state_dir))
            conn = schema.connect(self.path, busy_timeout_ms=self._busy_timeout_ms)
            try:
                schema.migrate(conn, path=self.path)
                if self._on_connect is not None:
                    self._on_connect(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    @contextlib.contextmanager
    def _failures(self, dataset: Optional[str]) -> Iterator[None]:
        """Turn a database failure into StoreError and drop the connection."""
        try:
            yield
        except SchemaTooNewError as exc:
            self.close()
            raise SchemaTooNewError(exc.found, exc.supported, path=exc.path,
                                    dataset=dataset) from None
        except (sqlite3.Error, OSError) as exc:
            self.close()
            cause = describe_sqlite_error(exc, self._busy_timeout_ms)
            log.warning("store write of %s failed: %s", dataset or "schema", cause)
            raise StoreError(dataset, cause, path=self.path) from exc

    def _run(self, dataset: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run `work(conn)` inside BEGIN IMMEDIATE ... COMMIT."""
        with self._failures(dataset):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection is discarded by _failures anyway
                raise
            return result

    def transaction(self, what: str, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """`work(conn)` in one write transaction; StoreError (naming `what`) if the database refuses.
        For the other tables of the store (workers/store/market.py)."""
        return self._run(what, work)

    def _clock(self) -> dt.datetime:
        return R.utc(self._now())

    # -- writes -------------------------------------------------------------

    def replace_snapshot(self, dataset: str, rows: Any, keep: Iterable[str] = (),
                         session: Optional[dt.date] = None) -> int:
        """Replace `dataset` with `rows` and stamp last_update, atomically.

        `dataset` is one of watchlist, macd_scanner, vpb_scanner,
        ttm_squeeze_scanner; `rows` a DataFrame or a list of dicts with
        exactly the API.md row fields (the timestamp field may be omitted: it
        is then `now`). One row per symbol. The stored rows of the symbols in
        `keep` (those this cycle could not fetch) stay as they are, with the
        time they were really fetched; every other old row goes. Returns the
        number of rows the dataset now holds. With `session` (the date of the
        daily bars a technical scan ran on), the new signals among `rows` are
        recorded in the signal history (history.py). Raises ValueError for an
        unknown dataset, RowError for bad rows (nothing written), StoreError
        if the database refused the write (the previous snapshot stays).
        """
        if dataset not in R.SNAPSHOT_DATASETS:
            raise ValueError(f"replace_snapshot takes one of {', '.join(R.SNAPSHOT_DATASETS)}, "
                             f"got {dataset!r} (whale flows go through record_whale_flows)")
        now = self._clock()
        prepared = R.to_db_rows(dataset, rows, now)
        R.check_unique(dataset, prepared)
        insert = _insert_sql(dataset)

        fresh = {row[0] for row in prepared}  # the symbol is every snapshot dataset's first column
        kept = json.dumps(sorted(set(keep) - fresh))
        kinds = H.DATASET_SIGNAL_KINDS.get(dataset, ()) if session is not None else ()
        signals = H.snapshot_signals(dataset, (R.from_db_row(dataset, row) for row in prepared), session) \
            if kinds else []

        def work(conn: sqlite3.Connection) -> int:
            conn.execute(f"DELETE FROM {dataset} WHERE symbol NOT IN (SELECT value FROM json_each(?))", (kept,))
            carried = conn.execute(f"SELECT count(*) FROM {dataset}").fetchone()[0]
            conn.executemany(insert, prepared)
            if kinds:
                H.record_signals(conn, signals, now, kinds, self.signal_retention_days)
            self._stamp(conn, dataset, now)
            return len(prepared) + carried

        return self._run(dataset, work)

    def record_whale_flows(self, rows: Any, retention_days: float) -> WhaleFlowsResult:
        """Merge this cycle's whale flows into the history, atomically.

        De-duplication: a flow is one contract (symbol, type, strike, expiry).
        Seen again on the same UTC day (of detected_at) it updates that day's
        row (whale_score, volume, open_interest, vol_oi, premium (the mark),
        total_premium (the notional), delta, dte, iv, underlying_price and
        detected_at take the newer sighting's values)
        instead of adding a row; seen on a later UTC day it starts a new row.
        Then rows with detected_at older than `retention_days` before `now` are
        deleted, each new flow is recorded in the signal history (history.py),
        and last_update['whale_flows'] is stamped; all in one transaction. detected_at may be omitted (it is then `now`).
        Raises ValueError for a bad retention, RowError for bad rows (nothing
        written), StoreError if the database refused the write.
        """
        if isinstance(retention_days, bool) or not isinstance(retention_days, (int, float)) \
                or not retention_days > 0:
            raise ValueError(f"retention_days must be a number of days > 0, got {retention_days!r}")
        now = self._clock()
        prepared = R.to_db_rows(R.WHALE_FLOWS, rows, now)
        cutoff = R.format_ts(now - dt.timedelta(days=retention_days))
        upsert = _whale_upsert_sql()
        signals = H.whale_signals(R.from_db_row(R.WHALE_FLOWS, row) for row in prepared)

        def work(conn: sqlite3.Connection) -> WhaleFlowsResult:
            before = conn.execute("SELECT count(*) FROM whale_flows").fetchone()[0]
            conn.executemany(upsert, prepared)
            after = conn.execute("SELECT count(*) FROM whale_flows").fetchone()[0]
            expired = conn.execute(
                "DELETE FROM whale_flows WHERE detected_at < ?", (cutoff,)).rowcount
            H.record_signals(conn, signals, now, ("whale_flow",), self.signal_retention_days)
            self._stamp(conn, R.WHALE_FLOWS, now)
            inserted = after - before
            return WhaleFlowsResult(inserted, len(prepared) - inserted, expired)

        return self._run(R.WHALE_FLOWS, work)

    def record_cycle(self, worker: str, duration_s: float, ok: bool) -> None:
        """One cycle of `worker` that ended now, for the cycle history (kept history.CYCLE_RETENTION)."""
        now = self._clock()
        self._run("cycles", lambda conn: H.record_cycle(conn, worker, now, duration_s, ok))

    @staticmethod
    def _stamp(conn: sqlite3.Connection, dataset: str, now: dt.datetime) -> None:
        conn.execute(_LAST_UPDATE_SQL, (dataset, now.isoformat(), R.format_ts(now)))
