"""Versioned SQLite schema for the scanner datasets, and how to open it.

The version lives in `PRAGMA user_version`. `MIGRATIONS[i]` takes a database
from version i to version i + 1; a released step is history and never edited:
change the schema by appending a step. `migrate()` applies every missing step
in ONE write transaction (BEGIN IMMEDIATE), so a crash or a failing step
leaves the database at its old version, and two processes opening at the same
time do not both migrate (the second one re-reads the version under the lock).

Column names are exactly the row fields of API.md (see `rows.DATASETS`; a
test checks the two agree). Rows have no declared id: readers use the
implicit rowid only to keep the writer's order as the last tie-breaker.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Callable, Sequence, Union

from .errors import SchemaTooNewError

__all__ = [
    "DB_FILENAME", "MIGRATIONS", "SCHEMA_VERSION", "database_path",
    "check_version", "connect", "migrate", "schema_version",
]

DB_FILENAME = "market_data.db"

# A step is a sequence of SQL statements or a function of the connection.
# (Never executescript(): it COMMITs first and would break the transaction.)
Step = Union[Sequence[str], Callable[[sqlite3.Connection], None]]

_BOOL = "INTEGER NOT NULL CHECK ({0} IN (0, 1))"

_V1_CREATE_TABLES: tuple[str, ...] = (
    """CREATE TABLE watchlist (
        symbol TEXT NOT NULL UNIQUE,
        price REAL,
        daily_change REAL,
        daily_change_pct REAL,
        volume INTEGER,
        updated_at TEXT NOT NULL
    )""",
    """CREATE TABLE whale_flows (
        symbol TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('CALL', 'PUT')),
        strike REAL NOT NULL,
        whale_score REAL,
        volume INTEGER,
        open_interest INTEGER,
        vol_oi REAL,
        premium REAL,
        delta REAL,
        expiry TEXT NOT NULL,
        dte INTEGER,
        detected_at TEXT NOT NULL
    )""",
    f"""CREATE TABLE macd_scanner (
        symbol TEXT NOT NULL UNIQUE,
        price REAL,
        price_change REAL,
        price_change_pct REAL,
        macd REAL,
        signal REAL,
        histogram REAL,
        bullish_cross {_BOOL.format('bullish_cross')},
        bearish_cross {_BOOL.format('bearish_cross')},
        trend TEXT,
        scanned_at TEXT NOT NULL
    )""",
    f"""CREATE TABLE vpb_scanner (
        symbol TEXT NOT NULL UNIQUE,
        price REAL,
        price_change REAL,
        price_change_pct REAL,
        buy_signal {_BOOL.format('buy_signal')},
        sell_signal {_BOOL.format('sell_signal')},
        volume_surge {_BOOL.format('volume_surge')},
        current_volume INTEGER,
        volume_ma30 REAL,
        volume_surge_pct REAL,
        highest_high_7 REAL,
        lowest_low_7 REAL,
        breakout_distance_pct REAL,
        breakdown_distance_pct REAL,
        pattern TEXT,
        scanned_at TEXT NOT NULL
    )""",
    f"""CREATE TABLE ttm_squeeze_scanner (
        symbol TEXT NOT NULL UNIQUE,
        signal TEXT NOT NULL,
        squeeze_on {_BOOL.format('squeeze_on')},
        momentum REAL,
        momentum_direction TEXT,
        squeeze_duration INTEGER,
        recent_fire {_BOOL.format('recent_fire')},
        fire_date TEXT,
        fire_direction TEXT,
        price REAL,
        bb_upper REAL,
        bb_lower REAL,
        kc_upper REAL,
        kc_lower REAL,
        scanned_at TEXT NOT NULL
    )""",
    """CREATE TABLE last_update (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
)

# v2: the newer scanner also reports implied volatility and the underlying's
# price with each flow (API.md lists both); older rows get NULL.
_V2_WHALE_IV: tuple[str, ...] = (
    "ALTER TABLE whale_flows ADD COLUMN iv REAL",
    "ALTER TABLE whale_flows ADD COLUMN underlying_price REAL",
)

# v3: one row per contract per UTC day (the de-duplication rule of
# writer.record_whale_flows). Rows written before it are collapsed to the
# latest sighting, which is what the rule would have kept.
_V3_WHALE_DEDUP: tuple[str, ...] = (
    """DELETE FROM whale_flows WHERE rowid NOT IN (
        SELECT rowid FROM (
            SELECT rowid, ROW_NUMBER() OVER (
                PARTITION BY symbol, type, strike, expiry, substr(detected_at, 1, 10)
                ORDER BY detected_at DESC, rowid DESC) AS rn
            FROM whale_flows)
        WHERE rn = 1)""",
    """CREATE UNIQUE INDEX whale_flows_contract_day ON whale_flows
        (symbol, type, strike, expiry, substr(detected_at, 1, 10))""",
    "CREATE INDEX whale_flows_detected_at ON whale_flows (detected_at)",
)

# v4: `premium` is the contract's mark again (a per-contract price), as the old
# service sent it and its dashboard expects (it multiplies by volume itself);
# the traded notional, volume x mark x 100, moves to the new `total_premium`.
# Rows written before it hold the notional in `premium`: it becomes their
# total_premium, and their mark is derived from it where the volume allows
# (volume > 0; else the mark is unknown: NULL). round(, 6) drops the float
# noise of the division, far below a mark's tick.
_V4_WHALE_TOTAL_PREMIUM: tuple[str, ...] = (
    "ALTER TABLE whale_flows ADD COLUMN total_premium REAL",
    """UPDATE whale_flows SET
        total_premium = premium,
        premium = CASE WHEN volume > 0 AND premium IS NOT NULL
                       THEN round(premium / volume / 100.0, 6) END""",
)

# v5: what the scanners fetch once and share (workers/store/market.py): daily bars
# per symbol and day, when each symbol's history was last fetched whole, each
# symbol's expirations of the day, and the option chains of the latest cycle.
_V5_MARKET_CACHE: tuple[str, ...] = (
    """CREATE TABLE daily_bars (
        symbol TEXT NOT NULL,
        date TEXT NOT NULL,
        open REAL, high REAL, low REAL, close REAL, volume REAL,
        PRIMARY KEY (symbol, date)
    ) WITHOUT ROWID""",
    """CREATE TABLE bars_history (
        symbol TEXT PRIMARY KEY,
        fetched_on TEXT NOT NULL,
        fetched_at TEXT NOT NULL
    )""",
    """CREATE TABLE expirations (
        symbol TEXT PRIMARY KEY,
        fetched_on TEXT NOT NULL,
        dates TEXT NOT NULL
    )""",
    """CREATE TABLE option_chains (
        symbol TEXT NOT NULL,
        expiry TEXT NOT NULL,
        fetched_at TEXT NOT NULL,
        type TEXT NOT NULL, strike REAL NOT NULL, bid REAL, ask REAL, last REAL, mark REAL,
        volume INTEGER, open_interest INTEGER, delta REAL, iv REAL, dte INTEGER, underlying_price REAL
    )""",
    "CREATE INDEX option_chains_symbol_expiry ON option_chains (symbol, expiry)",
)

# v6: what happened, kept for a while (workers/store/history.py): every new signal once (its
# `key` says what "the same signal" is), and every worker's cycles, for the page's charts.
# `kind` has no CHECK: new datasets add kinds of signal (history.SIGNAL_KINDS) without a table rebuild.
_V6_HISTORY: tuple[str, ...] = (
    """CREATE TABLE signals (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        kind TEXT NOT NULL,
        symbol TEXT NOT NULL,
        direction TEXT CHECK (direction IN ('bullish', 'bearish')),
        score REAL,
        key TEXT NOT NULL UNIQUE,
        payload TEXT NOT NULL
    )""",
    "CREATE INDEX signals_at ON signals (at)",
    "CREATE INDEX signals_symbol ON signals (symbol, at)",
    """CREATE TABLE cycles (
        worker TEXT NOT NULL,
        at TEXT NOT NULL,
        duration_s REAL NOT NULL,
        ok INTEGER NOT NULL CHECK (ok IN (0, 1))
    )""",
    "CREATE INDEX cycles_at ON cycles (at)",
)

MIGRATIONS: tuple[Step, ...] = (
    _V1_CREATE_TABLES,        # 0 -> 1
    _V2_WHALE_IV,             # 1 -> 2
    _V3_WHALE_DEDUP,          # 2 -> 3
    _V4_WHALE_TOTAL_PREMIUM,  # 3 -> 4
    _V5_MARKET_CACHE,         # 4 -> 5
    _V6_HISTORY,              # 5 -> 6
)
SCHEMA_VERSION = len(MIGRATIONS)


def database_path(state_dir: Union[str, os.PathLike]) -> Path:
    """Create `state_dir` if needed and return the database file inside it."""
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    return state / DB_FILENAME


def connect(path: Union[str, os.PathLike], *, busy_timeout_ms: int,
            query_only: bool = False) -> sqlite3.Connection:
    """Open `path` in WAL mode with synchronous=NORMAL and the busy timeout.

    The connection is in autocommit mode (isolation_level=None): callers say
    BEGIN/COMMIT themselves, so a transaction is exactly what they wrote.
    """
    conn = sqlite3.connect(os.fspath(path), timeout=busy_timeout_ms / 1000,
                           isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"could not enable WAL (journal_mode is {mode})")
        conn.execute("PRAGMA synchronous = NORMAL")
        if query_only:
            conn.execute("PRAGMA query_only = 1")
    except BaseException:
        conn.close()
        raise
    return conn


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION,
            steps: Sequence[Step] = MIGRATIONS, path: str | None = None) -> int:
    """Bring the database to version `target` in one transaction; return it.

    Raises SchemaTooNewError if the database is newer than `len(steps)`.
    """
    if not 0 <= target <= len(steps):
        raise ValueError(f"target must be between 0 and {len(steps)}, got {target}")
    current = schema_version(conn)
    if current > len(steps):
        raise SchemaTooNewError(current, len(steps), path=path)
    if current >= target:
        return current
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)  # another process may have migrated meanwhile
        if current > len(steps):
            raise SchemaTooNewError(current, len(steps), path=path)
        for version in range(current, target):
            step = steps[version]
            if callable(step):
                step(conn)
            else:
                for statement in step:
                    conn.execute(statement)
        if current < target:
            conn.execute(f"PRAGMA user_version = {int(target)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return max(current, target)


def check_version(conn: sqlite3.Connection, *, path: str | None = None) -> None:
    """Raise SchemaTooNewError unless the database is at SCHEMA_VERSION or older."""
    found = schema_version(conn)
    if found > SCHEMA_VERSION:
        raise SchemaTooNewError(found, SCHEMA_VERSION, path=path)
