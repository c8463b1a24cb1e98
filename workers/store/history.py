"""What happened, kept for a while: signal history and cycle history (schema v6).

**Signals.** A signal is recorded once, when a scanner first sees it:

| kind            | from                                      | once per                         | direction          |
|-----------------|-------------------------------------------|----------------------------------|--------------------|
| `macd_cross`    | a macd_scanner row with a bullish or bearish cross | symbol, session, direction | the cross's        |
| `vpb_breakout`  | a vpb_scanner row with `buy_signal`       | symbol, session                  | bullish            |
| `vpb_breakdown` | a vpb_scanner row with `sell_signal`      | symbol, session                  | bearish            |
| `ttm_fire`      | a ttm_squeeze_scanner row with `recent_fire` | symbol, `fire_date`           | `fire_direction`   |
| `whale_flow`    | a whale_flows row                         | contract, UTC day (the flow's de-duplication rule) | CALL bullish, PUT bearish |
| `cycle_peak`    | a cycle_scanner row with signal_type PEAK | symbol, the peak's own bar (`extremum_date`) | bearish        |
| `cycle_bottom`  | a cycle_scanner row with signal_type BOTTOM | symbol, `extremum_date`        | bullish            |
| `gamma_flip_cross` | a symbol's key_levels over every expiration (expiry `all`) whose spot is on the other side of its `gamma_flip` than in the previous cycle | symbol, New York day, direction | above the flip bullish, below bearish |
| `sentiment_change` | a market_sentiment row whose `sentiment_label` differs from the symbol's previous row | symbol, the row's `timestamp` | toward BULLISH bullish, toward BEARISH bearish |

"Session" is the date of the daily bar the scan ran on (New York), so a cross that
flickers during the day is one signal, and the same cross tomorrow is another. `at` is
when it was recorded (stored as the datasets' UTC text, answered as ISO 8601 with Z); `values` (stored as
`payload`) is the scanner's row as it was then, so the history says what the scanner
saw even after the dataset moved on; `score` is the whale score, the sentiment score of a
`sentiment_change` (NULL for the others). A cycle peak or bottom is recorded on the cycle that
confirms it, five bars after its own bar, with that bar's date in its key: confirmed again by
the next cycles, or on the partial bar of the session again and again, it stays one signal. A
gamma-flip crossing or a sentiment change compares two successive cycles (the previous rows are
read in the same transaction); the first cycle after a start compares with what the store held.
Signals are written in the same transaction as the dataset they come from, so a
dataset and its history never disagree; each writer prunes its own kinds older than its
retention. `key` (UNIQUE) is what makes a signal "the same one": a second sighting is
ignored (INSERT OR IGNORE), so re-running a cycle records nothing twice.

**Cycles.** Every scanner cycle (not the idle ones outside the schedule) is one row:
worker, when it ended, its duration and whether it succeeded, kept `CYCLE_RETENTION`.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from . import rows as R

__all__ = ["Signal", "SIGNAL_KINDS", "DATASET_SIGNAL_KINDS", "CYCLE_RETENTION", "DEFAULT_SIGNAL_RETENTION_DAYS",
           "snapshot_signals", "whale_signals", "gamma_flip_signals", "sentiment_signals", "record_signals",
           "select_signals", "record_cycle", "select_cycles", "signal_row"]

SIGNAL_KINDS = ("whale_flow", "macd_cross", "ttm_fire", "vpb_breakout", "vpb_breakdown", "cycle_peak",
                "cycle_bottom", "gamma_flip_cross", "sentiment_change")
DATASET_SIGNAL_KINDS = {
    "macd_scanner": ("macd_cross",),
    "vpb_scanner": ("vpb_breakout", "vpb_breakdown"),
    "ttm_squeeze_scanner": ("ttm_fire",),
    "whale_flows": ("whale_flow",),
    "cycle_scanner": ("cycle_peak", "cycle_bottom"),
    "key_levels": ("gamma_flip_cross",),
    "market_sentiment": ("sentiment_change",),
}
SENTIMENT_LABELS = ("BEARISH", "SLIGHTLY_BEARISH", "NEUTRAL", "SLIGHTLY_BULLISH", "BULLISH")
DIRECTIONS = ("bullish", "bearish")
DEFAULT_SIGNAL_RETENTION_DAYS = 30.0
CYCLE_RETENTION = dt.timedelta(hours=48)
_SIGNAL_COLUMNS = "id, at, kind, symbol, direction, score, payload"


@dataclass(frozen=True)
class Signal:
    kind: str
    symbol: str
    direction: Optional[str]
    score: Optional[float]
    key: str
    values: Mapping[str, Any]


def _values(row: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    skip = {"symbol", R.TIMESTAMP_COLUMN[dataset]}
    return {name: value for name, value in row.items() if name not in skip}


def snapshot_signals(dataset: str, rows: Iterable[Mapping[str, Any]], session: dt.date) -> list[Signal]:
    """The signals in a technical scanner's rows (as `rows.from_db_row` gives them), for the bars of `session`."""
    day = session.isoformat()
    out = []
    for row in rows:
        symbol = str(row["symbol"])
        if dataset == "macd_scanner":
            found = [("macd_cross", d, f"macd_cross:{symbol}:{day}:{d}")
                     for d, flag in (("bullish", "bullish_cross"), ("bearish", "bearish_cross")) if row.get(flag)]
        elif dataset == "vpb_scanner":
            found = [(kind, d, f"{kind}:{symbol}:{day}")
                     for kind, d, flag in (("vpb_breakout", "bullish", "buy_signal"),
                                           ("vpb_breakdown", "bearish", "sell_signal")) if row.get(flag)]
        elif dataset == "ttm_squeeze_scanner":
            found = []
            if row.get("recent_fire") and row.get("fire_date"):
                direction = row.get("fire_direction") if row.get("fire_direction") in DIRECTIONS else None
                found = [("ttm_fire", direction, f"ttm_fire:{symbol}:{row['fire_date']}")]
        elif dataset == "cycle_scanner":
            found = [(kind, direction, f"{kind}:{symbol}:{row['extremum_date']}")
                     for kind, direction, signal in (("cycle_peak", "bearish", "PEAK"),
                                                     ("cycle_bottom", "bullish", "BOTTOM"))
                     if row.get("signal_type") == signal and row.get("extremum_date")]
        else:
            raise ValueError(f"no signals are derived from {dataset!r}")
        out.extend(Signal(kind, symbol, direction, None, key, _values(row, dataset))
                   for kind, direction, key in found)
    return out


def whale_signals(rows: Iterable[Mapping[str, Any]]) -> list[Signal]:
    """One signal per whale flow (rows as `rows.from_db_row` gives them): per contract and UTC day of its
    sighting, the flows' own de-duplication rule. CALL is bullish, PUT bearish."""
    out = []
    for row in rows:
        symbol, kind = str(row["symbol"]), str(row["type"])
        key = f"whale_flow:{symbol}:{kind}:{float(row['strike']):g}:{row['expiry']}:{str(row['detected_at'])[:10]}"
        score = row.get("whale_score")
        out.append(Signal("whale_flow", symbol, "bullish" if kind == "CALL" else "bearish",
                          float(score) if score is not None else None, key, _values(row, R.WHALE_FLOWS)))
    return out


def gamma_flip_signals(previous: Mapping[str, Mapping], rows: Iterable[Mapping[str, Any]], day: str) -> list[Signal]:
    """Crossings of the gamma flip between the previous cycle's key levels (symbol -> row) and these rows
    (a symbol's over every expiration), on New York `day`."""
    out = []
    for row in rows:
        before = previous.get(row["symbol"])
        side, was = _side(row), _side(before) if before else None
        if side is None or was is None or side == was:
            continue
        direction = "bullish" if side > 0 else "bearish"
        values = {**_values(row, "key_levels"), "previous_underlying_price": before.get("underlying_price"),
                  "previous_gamma_flip": before.get("gamma_flip")}
        out.append(Signal("gamma_flip_cross", str(row["symbol"]), direction, None,
                          f"gamma_flip_cross:{row['symbol']}:{day}:{direction}", values))
    return out


def _side(row: Mapping[str, Any]) -> Optional[int]:
    """+1 with spot above the gamma flip, -1 below, None without a flip (or on it)."""
    spot, flip = row.get("underlying_price"), row.get("gamma_flip")
    if spot is None or flip is None or spot == flip:
        return None
    return 1 if spot > flip else -1


def sentiment_signals(previous: Mapping[str, str], rows: Iterable[Mapping[str, Any]]) -> list[Signal]:
    """A label change between a symbol's previous market_sentiment label (symbol -> label) and its new row."""
    out = []
    for row in rows:
        before, label = previous.get(row["symbol"]), row.get("sentiment_label")
        if before is None or label is None or before == label or before not in SENTIMENT_LABELS \
                or label not in SENTIMENT_LABELS:
            continue
        direction = "bullish" if SENTIMENT_LABELS.index(label) > SENTIMENT_LABELS.index(before) else "bearish"
        score = row.get("sentiment_score")
        out.append(Signal("sentiment_change", str(row["symbol"]), direction,
                          float(score) if score is not None else None,
                          f"sentiment_change:{row['symbol']}:{row['timestamp']}",
                          {**_values(row, "market_sentiment"), "previous_label": before}))
    return out


def record_signals(conn: sqlite3.Connection, signals: Iterable[Signal], now: dt.datetime,
                   kinds: Iterable[str], retention_days: float) -> int:
    """Insert the signals not seen before, then prune `kinds` older than the retention. Returns the new ones.
    Runs inside the caller's transaction."""
    stamp = R.format_ts(R.utc(now))
    signals = list(signals)
    unknown = sorted({s.kind for s in signals} - set(SIGNAL_KINDS))
    if unknown:
        raise ValueError(f"unknown kind of signal {unknown[0]!r} (known: {', '.join(SIGNAL_KINDS)})")
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO signals (at, kind, symbol, direction, score, key, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(stamp, s.kind, s.symbol, s.direction, s.score, s.key, json.dumps(s.values, sort_keys=True, default=str))
         for s in signals])
    inserted = conn.total_changes - before
    kinds = tuple(kinds)
    if kinds:
        cutoff = R.format_ts(R.utc(now) - dt.timedelta(days=retention_days))
        conn.execute(f"DELETE FROM signals WHERE at < ? AND kind IN ({', '.join('?' * len(kinds))})",
                     (cutoff, *kinds))
    return inserted


def iso_z(stamp: str) -> str:
    """A stored 'YYYY-MM-DD HH:MM:SS' (UTC) as ISO 8601 with Z, the form of every new field of the API."""
    return f"{stamp[:10]}T{stamp[11:19]}Z" if len(stamp) >= 19 else stamp


def signal_row(row: tuple) -> dict[str, Any]:
    id_, at, kind, symbol, direction, score, payload = row
    at = iso_z(at)
    try:
        values = json.loads(payload)
    except ValueError:
        values = {}
    return {"id": id_, "at": at, "kind": kind, "symbol": symbol, "direction": direction, "score": score,
            "values": values if isinstance(values, dict) else {}}


def select_signals(conn: sqlite3.Connection, *, kind: Optional[str], symbol: Optional[str],
                   since: Optional[str], limit: int, after_id: Optional[int] = None) -> list[dict]:
    """Signals matching the filters: newest first, or in id order after `after_id` (for a reader that follows)."""
    where, params = [], []
    for column, value in (("kind", kind), ("symbol", symbol)):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if after_id is not None:
        where.append("id > ?")
        params.append(int(after_id))
    order = "id ASC" if after_id is not None else "id DESC"
    sql = (f"SELECT {_SIGNAL_COLUMNS} FROM signals WHERE {' AND '.join(where) or '1'} "
           f"ORDER BY {order} LIMIT ?")
    return [signal_row(row) for row in conn.execute(sql, (*params, int(limit))).fetchall()]


def record_cycle(conn: sqlite3.Connection, worker: str, now: dt.datetime, duration_s: float, ok: bool) -> None:
    """One cycle of `worker`, ended at `now`; and the worker's cycles older than CYCLE_RETENTION go."""
    now = R.utc(now)
    conn.execute("INSERT INTO cycles (worker, at, duration_s, ok) VALUES (?, ?, ?, ?)",
                 (worker, R.format_ts(now), float(duration_s), 1 if ok else 0))
    conn.execute("DELETE FROM cycles WHERE worker = ? AND at < ?", (worker, R.format_ts(now - CYCLE_RETENTION)))


def select_cycles(conn: sqlite3.Connection, *, worker: Optional[str], since: str, limit: int) -> list[dict]:
    """Cycles since `since`, oldest first (the newest `limit` of them)."""
    where, params = "at >= ?", [since]
    if worker is not None:
        where += " AND worker = ?"
        params.append(worker)
    rows = conn.execute(f"SELECT worker, at, duration_s, ok, rowid FROM cycles WHERE {where} "
                        f"ORDER BY at DESC, rowid DESC LIMIT ?", (*params, int(limit))).fetchall()
    return [{"worker": w, "at": iso_z(at), "duration_s": round(float(d), 3), "ok": bool(ok)}
            for w, at, d, ok, _ in reversed(rows)]
