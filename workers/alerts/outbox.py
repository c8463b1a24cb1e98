"""The alerts worker's state, in its own SQLite file (`alerts.db` in state_dir, WAL): nothing is lost
to a kill at any moment, and nothing marked sent is sent again.

- `alerts`: every alert taken in, once (`event_id` UNIQUE: the supervisor's
  `<boot_id>:<seq>`, `signal:<key>` for a signal, `view:<n>` for what the
  worker derived from the status and the store); kept RETENTION_DAYS.
- `pending`: (destination, alert) pairs not delivered yet. A destination is
  named by a digest of its URL, never the URL: this file holds no secret.
  Delivery deletes the pairs a message carried, in one transaction; that is
  the "sent" mark. A kill between the send and the mark sends that message
  again on the next pass: delivery is at least once.
- `cursors`: how far each source has been read (the supervisor's last event
  id, the last signal id) and the last view of the status (quarantined
  items, stale datasets, the Schwab login), as JSON.
- `counts`: sent, failed and dropped messages per destination, so that the
  counters of /metrics never go down across restarts, and its failures in a
  row, so that a successor goes on backing off where its predecessor was.

`take()` records new alerts with their pending pairs together with the new
cursors and view, in one transaction: a kill before it commits leaves the
sources unread, to be read again; after it, everything is here.
"""
import json
import os
import sqlite3
import time

FILE_NAME = "alerts.db"
RETENTION_DAYS = 7
MAX_PENDING = 5000  # per destination; beyond it the oldest are dropped (and counted)
SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL UNIQUE,
  kind TEXT NOT NULL,
  at TEXT NOT NULL,
  taken REAL NOT NULL,
  payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
  target TEXT NOT NULL,
  alert_id INTEGER NOT NULL,
  PRIMARY KEY (target, alert_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counts (
  target TEXT NOT NULL,
  name TEXT NOT NULL,
  value INTEGER NOT NULL,
  PRIMARY KEY (target, name)
) WITHOUT ROWID;
"""
COUNT_NAMES = ("sent", "failed", "dropped")


class Outbox:
    def __init__(self, state_dir, wall_clock=time.time):
        self.path = os.path.join(state_dir, FILE_NAME)
        self.wall_clock = wall_clock
        self.conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        os.chmod(self.path, 0o600)

    def close(self):
        self.conn.close()

    # -- reading ----------------------------------------------------------

    def cursor(self, name, default=None):
        row = self.conn.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return json.loads(row[0]) if row else default

    def pending(self, target, limit=1000):
        """The alerts waiting for `target`, oldest first: dicts with id, event_id, kind, at and the payload."""
        rows = self.conn.execute(
            "SELECT a.id, a.event_id, a.kind, a.at, a.payload FROM pending p JOIN alerts a ON a.id = p.alert_id "
            "WHERE p.target = ? ORDER BY a.id LIMIT ?", (target, limit)).fetchall()
        return [{**json.loads(payload), "id": id_, "event_id": event_id, "kind": kind, "at": at}
                for id_, event_id, kind, at, payload in rows]

    def pending_counts(self):
        return dict(self.conn.execute("SELECT target, count(*) FROM pending GROUP BY target").fetchall())

    def counts(self):
        """{name: {target: n}} for sent, failed and dropped."""
        out = {name: {} for name in COUNT_NAMES}
        for target, name, value in self.conn.execute("SELECT target, name, value FROM counts"):
            if name in out:
                out[name][target] = value
        return out

    def failures_in_a_row(self):
        return dict(self.conn.execute("SELECT target, value FROM counts WHERE name = 'in_a_row'").fetchall())

    # -- writing (each call one transaction) ---------------------------

    def take(self, alerts, targets, cursors):
        """Record `alerts` (dicts with event_id, kind, at and the rest) pending for every target, and
        the new `cursors` (name -> JSON value), at once. Returns the alerts that were new."""
        new = []
        with self._transaction() as conn:
            for alert in alerts:
                payload = {k: v for k, v in alert.items() if k not in ("event_id", "kind", "at")}
                cursor = conn.execute("INSERT OR IGNORE INTO alerts (event_id, kind, at, taken, payload) "
                                      "VALUES (?, ?, ?, ?, ?)", (alert["event_id"], alert["kind"], alert["at"],
                                                                  self.wall_clock(), json.dumps(payload)))
                if cursor.rowcount:
                    new.append(alert)
                    conn.executemany("INSERT OR IGNORE INTO pending (target, alert_id) VALUES (?, ?)",
                                     [(target, cursor.lastrowid) for target in targets])
            for name, value in cursors.items():
                conn.execute("INSERT OR REPLACE INTO cursors (name, value) VALUES (?, ?)", (name, json.dumps(value)))
            if new:
                for target in targets:
                    self._bound(conn, target)
        return new

    def sent(self, target, alert_ids):
        """Mark these alerts delivered to `target` (the message that carried them went out)."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM pending WHERE target = ? AND alert_id = ?",
                             [(target, i) for i in alert_ids])
            self._count(conn, target, "sent")
            conn.execute("DELETE FROM counts WHERE target = ? AND name = 'in_a_row'", (target,))

    def failed(self, target):
        with self._transaction() as conn:
            self._count(conn, target, "failed")
            self._count(conn, target, "in_a_row")

    def forget_targets(self, keep):
        """Drop what waits for destinations no longer configured; returns how many pairs were dropped."""
        with self._transaction() as conn:
            gone = conn.execute(f"SELECT target, count(*) FROM pending WHERE target NOT IN "
                                f"({', '.join('?' * len(keep))}) GROUP BY target", tuple(keep)).fetchall()
            for target, n in gone:
                conn.execute("DELETE FROM pending WHERE target = ?", (target,))
        return sum(n for _, n in gone)

    def prune(self):
        """Forget delivered alerts older than RETENTION_DAYS."""
        cutoff = self.wall_clock() - RETENTION_DAYS * 86400
        with self._transaction() as conn:
            conn.execute("DELETE FROM alerts WHERE taken < ? AND id NOT IN (SELECT alert_id FROM pending)", (cutoff,))

    # -- plumbing -----------------------------------------------------------

    def _bound(self, conn, target):
        (count,) = conn.execute("SELECT count(*) FROM pending WHERE target = ?", (target,)).fetchone()
        if count > MAX_PENDING:
            conn.execute("DELETE FROM pending WHERE target = ? AND alert_id IN (SELECT alert_id FROM pending "
                         "WHERE target = ? ORDER BY alert_id LIMIT ?)", (target, target, count - MAX_PENDING))
            self._count(conn, target, "dropped", count - MAX_PENDING)

    @staticmethod
    def _count(conn, target, name, n=1):
        conn.execute("INSERT INTO counts (target, name, value) VALUES (?, ?, ?) ON CONFLICT (target, name) "
                     "DO UPDATE SET value = value + excluded.value", (target, name, n))

    def _transaction(self):
        return _Transaction(self.conn)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any exception."""

    def __init__(self, conn):
        self.conn = conn

    def __enter__(self):
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, kind, value, traceback):
        self.conn.execute("COMMIT" if kind is None else "ROLLBACK")
