"""A worker SIGKILLed in the middle of a write leaves the last committed snapshot.

Each test runs a real child process that writes large watchlist snapshots in
a loop through StoreWriter. Snapshot n is a pure function of n, so the parent
can say exactly what the database must hold. The child reports on stdout
("BEGUN n" when its transaction has begun deleting/inserting, "COMMITTED n"
after each commit); the parent kills the child's process group with SIGKILL
and then inspects the database. No sleeps: every wait is on the child's
output, under a deadline.
"""

from __future__ import annotations

import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workers.store import StoreReader

ROOT = Path(__file__).resolve().parents[1]
ROWS = 3000
DEADLINE_S = 20.0

# argv: state_dir, pause_at (0: never pause). The trace callback runs inside
# the transaction; it reports the snapshot number once half the rows are in
# and, for snapshot pause_at, blocks on stdin so the kill surely lands there.
CHILD = r"""
import datetime as dt, sys
from workers.store import StoreWriter

state_dir, pause_at, rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
n = 0
inserted = 0

def snapshot(n):
    return [{"symbol": f"S{i:05d}", "price": n * 1000.0 + i, "daily_change": float(n),
             "daily_change_pct": i / 100.0, "volume": n} for i in range(rows)]

def trace(statement):
    global inserted
    if statement.startswith("INSERT INTO watchlist"):
        inserted += 1
        if inserted == rows // 2:
            print(f"BEGUN {n}", flush=True)
            if n == pause_at:
                sys.stdin.read()  # never returns: the parent kills us here

def on_connect(conn):
    conn.execute("PRAGMA cache_size = 20")  # spill uncommitted pages into the WAL
    conn.set_trace_callback(trace)

base = dt.datetime(2024, 5, 6, tzinfo=dt.timezone.utc)
writer = StoreWriter(state_dir, now=lambda: base + dt.timedelta(minutes=n),
                     on_connect=on_connect).open()
while True:
    n += 1
    inserted = 0
    writer.replace_snapshot("watchlist", snapshot(n))
    print(f"COMMITTED {n}", flush=True)
"""


def expected_snapshot(n: int) -> list[dict]:
    stamp = f"2024-05-06 00:{n:02d}:00" if n < 60 else None
    return [{"symbol": f"S{i:05d}", "price": n * 1000.0 + i, "daily_change": float(n),
             "daily_change_pct": i / 100.0, "volume": n, "updated_at": stamp}
            for i in range(ROWS)]


class Child:
    """The writer process, read line by line under a deadline."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self._buffer = b""
        self._selector = selectors.DefaultSelector()
        self._selector.register(proc.stdout, selectors.EVENT_READ)

    def wait_for(self, prefix: str, deadline: float) -> str:
        while True:
            if b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                text = line.decode()
                if text.startswith(prefix):
                    return text
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {prefix!r} line from the child in time")
            if self._selector.select(remaining):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"child exited ({self.proc.wait()}) before {prefix!r}: "
                                         f"{self.proc.stderr.read().decode()[-2000:]}")
                self._buffer += chunk

    def kill(self) -> None:
        """SIGKILL the whole group and reap the child."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=DEADLINE_S)
        assert self.proc.returncode == -signal.SIGKILL


@pytest.fixture
def spawn(request, tmp_path):
    """Start the writer child in its own process group; the finalizer kills the group."""
    children: list[Child] = []

    def start(pause_at: int) -> Child:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / "state"), str(pause_at), str(ROWS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=ROOT, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        children.append(Child(proc))
        return children[-1]

    def finalize():
        for child in children:
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            child.proc.wait()
            for stream in (child.proc.stdin, child.proc.stdout, child.proc.stderr):
                stream.close()

    request.addfinalizer(finalize)
    return start


def check_database(state_dir: Path, n: int) -> None:
    """integrity_check is ok and the watchlist is exactly snapshot n, with its last_update."""
    conn = sqlite3.connect(state_dir / "market_data.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        stored = conn.execute("SELECT symbol, price, daily_change, daily_change_pct, volume,"
                              " updated_at FROM watchlist ORDER BY symbol").fetchall()
    finally:
        conn.close()
    assert stored == [tuple(row.values()) for row in expected_snapshot(n)]
    with StoreReader(state_dir) as reader:
        assert reader.watchlist(order_by="symbol", limit=3) == expected_snapshot(n)[:-4:-1]
        assert reader.last_update()["watchlist"]["updated_at"] == f"2024-05-06 00:{n:02d}:00"


def test_kill_inside_a_write_transaction_keeps_the_last_committed_snapshot(spawn, tmp_path):
    deadline = time.monotonic() + DEADLINE_S
    child = spawn(pause_at=3)
    assert child.wait_for("COMMITTED", deadline) == "COMMITTED 1"
    assert child.wait_for("COMMITTED", deadline) == "COMMITTED 2"
    assert child.wait_for("BEGUN", deadline) == "BEGUN 3"  # half of snapshot 3 is in

    child.kill()

    wal = tmp_path / "state" / "market_data.db-wal"
    assert wal.exists() and wal.stat().st_size > 0  # uncommitted frames were left behind
    check_database(tmp_path / "state", 2)


def test_repeated_kills_mid_write_never_leave_a_mixed_or_corrupt_snapshot(spawn, tmp_path):
    deadline = time.monotonic() + DEADLINE_S
    for round_ in range(3):
        child = spawn(pause_at=0)
        committed = 0
        while committed < round_ + 1:  # kill a little later each round
            committed = int(child.wait_for("COMMITTED", deadline).split()[1])
        begun = int(child.wait_for("BEGUN", deadline).split()[1])
        child.kill()
        # The kill landed mid-transaction of snapshot `begun`, or just after its
        # commit if the child outran us; either way a whole snapshot survives.
        assert begun == committed + 1
        state = tmp_path / "state"
        with StoreReader(state) as reader:
            found = reader.last_update()["watchlist"]["updated_at"]
        n = int(found[-5:-3])
        assert n in (committed, begun), (round_, committed, begun, found)
        check_database(state, n)
