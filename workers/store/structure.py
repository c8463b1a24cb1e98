"""The market-structure datasets in the store (schema v7): written together, read by the API.

One market_structure cycle is ONE transaction (`write`): the key levels of every chain replace the
previous cycle's (a snapshot, with a symbol's levels over every expiration under expiry 'all'), the
unusual contracts (`oi_flows`) likewise; a skew row per chain and a sentiment row per symbol are
appended to their histories, each pruned to its retention; each symbol's 30-day ATM IV of the New
York day is kept in `atm_iv_daily` (one value a day, the day's latest, for IV_DAYS); the gamma-flip
crossings and sentiment label changes since the previous cycle go into the signal history
(history.py); and the four datasets' last_update rows are stamped. A reader sees the previous cycle
or this one, never a mix. The read side: the queries of /api/key_levels, /api/market_sentiment,
/api/top_opportunities, /api/market_fear_greed, /api/skew_metrics and /api/oi_flows.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3
from typing import Any, Iterable, Mapping, Optional

from . import history as H
from . import rows as R

IV_DAYS = 400  # calendar days of daily ATM IV kept (the IV rank reads the last 252 trading days)
ALL = "all"


def _insert(conn: sqlite3.Connection, dataset: str, prepared: list[tuple]) -> None:
    names = [c.name for c in R.DATASETS[dataset]]
    conn.executemany(f"INSERT INTO {dataset} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})", prepared)


def previous_state(conn: sqlite3.Connection) -> tuple[dict, dict]:
    """(symbol -> its stored levels over every expiration, symbol -> its latest sentiment label)."""
    names = [c.name for c in R.DATASETS["key_levels"]]
    levels = {row[0]: R.from_db_row("key_levels", row) for row in conn.execute(
        f"SELECT {', '.join(names)} FROM key_levels WHERE expiry = ?", (ALL,))}
    labels = {symbol: label for symbol, label in conn.execute(
        "SELECT symbol, sentiment_label FROM market_sentiment AS m WHERE timestamp = "
        "(SELECT max(timestamp) FROM market_sentiment WHERE symbol = m.symbol)")}
    return levels, labels


def write(conn: sqlite3.Connection, prepared: Mapping[str, list[tuple]], atm_ivs: Mapping[str, float],
          now: dt.datetime, day: str, *, skew_retention_days: float, sentiment_retention_days: float,
          signal_retention_days: float) -> dict[str, int]:
    """Inside the caller's transaction; `prepared`: dataset -> rows from rows.to_db_rows. Returns counts."""
    previous_levels, previous_labels = previous_state(conn)
    conn.execute("DELETE FROM key_levels")
    conn.execute("DELETE FROM oi_flows")
    for dataset in R.STRUCTURE_DATASETS:
        _insert(conn, dataset, prepared[dataset])
    cutoff = lambda days: R.format_ts(now - dt.timedelta(days=days))  # noqa: E731
    expired = conn.execute("DELETE FROM skew_metrics WHERE computed_at < ?", (cutoff(skew_retention_days),)).rowcount
    expired += conn.execute("DELETE FROM market_sentiment WHERE timestamp < ?",
                            (cutoff(sentiment_retention_days),)).rowcount
    conn.executemany("INSERT INTO atm_iv_daily VALUES (?, ?, ?) ON CONFLICT (symbol, date) DO UPDATE SET "
                     "atm_iv = excluded.atm_iv", [(s, day, float(v)) for s, v in atm_ivs.items() if v == v])
    conn.execute("DELETE FROM atm_iv_daily WHERE date < ?",
                 ((dt.date.fromisoformat(day) - dt.timedelta(days=IV_DAYS)).isoformat(),))
    overall = [R.from_db_row("key_levels", row) for row in prepared["key_levels"] if row[1] == ALL]
    moods = [R.from_db_row("market_sentiment", row) for row in prepared["market_sentiment"]]
    signals = H.gamma_flip_signals(previous_levels, overall, day) + H.sentiment_signals(previous_labels, moods)
    new = H.record_signals(conn, signals, now, ("gamma_flip_cross", "sentiment_change"), signal_retention_days)
    for dataset in R.STRUCTURE_DATASETS:
        conn.execute("INSERT INTO last_update (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) "
                     "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                     (dataset, now.isoformat(), R.format_ts(now)))
    return {"signals": new, "expired": expired}


def iv_histories(conn: sqlite3.Connection, symbols: Iterable[str], before: str) -> dict[str, list[float]]:
    """Each symbol's stored daily ATM IVs before New York day `before`, oldest first."""
    out: dict[str, list[float]] = {}
    for symbol, value in conn.execute(
            "SELECT symbol, atm_iv FROM atm_iv_daily WHERE date < ? AND symbol IN (SELECT value FROM json_each(?)) "
            "ORDER BY symbol, date", (before, json.dumps(list(symbols)))):
        out.setdefault(symbol, []).append(float(value))
    return out


# -- reading ---------------------------------------------------------------------------------

def _rows(conn: sqlite3.Connection, dataset: str, where: str, order: str, params: tuple = (),
          limit: Optional[int] = None) -> list[dict[str, Any]]:
    names = ", ".join(c.name for c in R.DATASETS[dataset])
    sql = f"SELECT {names} FROM {dataset} WHERE {where} ORDER BY {order}" + (" LIMIT ?" if limit else "")
    return [R.from_db_row(dataset, row) for row in conn.execute(sql, (*params, *((limit,) if limit else ())))]


def latest_sentiment(conn: sqlite3.Connection) -> list[dict]:
    return _rows(conn, "market_sentiment", "timestamp = (SELECT max(timestamp) FROM market_sentiment AS l "
                                           "WHERE l.symbol = market_sentiment.symbol)", "symbol")


def sentiment_history(conn: sqlite3.Connection, symbol: Optional[str], since: str, limit: int) -> list[dict]:
    """Rows since `since`, oldest first (the newest `limit` of them)."""
    where, params = ("timestamp >= ? AND symbol = ?", (since, symbol)) if symbol else ("timestamp >= ?", (since,))
    return _rows(conn, "market_sentiment", where, "timestamp DESC, rowid DESC", params, limit)[::-1]


def skew_since(conn: sqlite3.Connection, since: str) -> list[dict]:
    return _rows(conn, "skew_metrics", "computed_at >= ?", "computed_at, rowid", (since,))


def whales_since(conn: sqlite3.Connection, since: str) -> list[dict]:
    return _rows(conn, R.WHALE_FLOWS, "detected_at >= ?", "detected_at, rowid", (since,))


def latest_skew(conn: sqlite3.Connection, symbol: Optional[str], limit: int) -> list[dict]:
    """Each chain's latest skew row (of `symbol`, or every symbol), by symbol and expiry."""
    latest = ("computed_at = (SELECT max(computed_at) FROM skew_metrics AS l WHERE l.symbol = skew_metrics.symbol "
              "AND l.expiry = skew_metrics.expiry)")
    where, params = (latest + " AND symbol = ?", (symbol,)) if symbol else (latest, ())
    return _rows(conn, "skew_metrics", where, "symbol, expiry", params, limit)


def oi_flows(conn: sqlite3.Connection, symbol: Optional[str], limit: int) -> list[dict]:
    where, params = ("symbol = ?", (symbol,)) if symbol else ("1", ())
    return _rows(conn, "oi_flows", where, "vol_oi_ratio DESC, rowid", params, limit)


def key_levels(conn: sqlite3.Connection, symbol: str, expiry: str) -> Optional[dict]:
    found = _rows(conn, "key_levels", "symbol = ? AND expiry = ?", "rowid", (symbol, expiry), 1)
    return found[0] if found else None


def chain_list(conn: sqlite3.Connection) -> list[dict]:
    """The stored chains: {symbol, expiry, fetched_at, contracts}, by symbol and expiry."""
    return [{"symbol": s, "expiry": e, "fetched_at": f, "contracts": n} for s, e, f, n in conn.execute(
        "SELECT symbol, expiry, max(fetched_at), count(*) FROM option_chains GROUP BY symbol, expiry "
        "ORDER BY symbol, expiry")]


CHAIN_COLUMNS = ("symbol", "expiry", "fetched_at", "type", "strike", "bid", "ask", "last", "mark", "volume",
                 "open_interest", "delta", "iv", "dte", "underlying_price", "gamma", "theta", "vega")


def chain_rows(conn: sqlite3.Connection, symbol: str, expiry: Optional[str]) -> list[tuple]:
    """A stored chain's contracts (CHAIN_COLUMNS), or every stored expiration of `symbol` with expiry None."""
    where, params = ("symbol = ? AND expiry = ?", (symbol, expiry)) if expiry else ("symbol = ?", (symbol,))
    return conn.execute(f"SELECT {', '.join(CHAIN_COLUMNS)} FROM option_chains WHERE {where} "
                        "ORDER BY expiry, type, strike", params).fetchall()
