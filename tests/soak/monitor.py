"""What the soak watches while it drives: writes, zombies, mdwd's fds and RSS, status.

`Monitor` polls every POLL seconds, in its own thread:
- the `last_update` table (a read-only SQLite connection of its own: in WAL
  mode it reads even while the soak holds the write lock): the time each
  dataset's row changed is a write;
- mdwd's descendants (psutil): every one in state Z is timed from the first
  poll that saw it; every process seen is remembered by pid and name, to name
  a zombie's parent;
- mdwd's own open fds and RSS, for the growth check. mdwd holds two pipes per
  live child (heartbeats, output), so its fd count moves with the number of
  children running at the instant; the sample keeps fds - 2 x live children
  (its own fds), taken only when that number did not change around it.
`StatusPoller` keeps the latest few `mdwctl status --json` answers, for the
context of a violation and the restart counts; it is a thread of its own so a
slow mdwctl never delays the polls above.
"""
import collections
import sqlite3
import statistics
import threading
import time

import psutil

from tests.soak.settings import WRITER

POLL = 0.5


class Monitor(threading.Thread):
    def __init__(self, tree, on_zombie):
        super().__init__(name="soak-monitor", daemon=True)
        self.tree = tree
        self.on_zombie = on_zombie  # called once per zombie older than ZOMBIE_LIMIT
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.writes = {dataset: [] for dataset in WRITER}  # dataset -> [monotonic time a new write was seen]
        self.values = {}  # dataset -> the last value seen
        self.zombies = {}  # (pid, create time) -> [first seen, last seen, name, parent]
        self.seen = {}  # pid -> name of every process of the tree seen
        self.resources = []  # (time, open fds, RSS in MiB) of mdwd
        self.error = None  # the exception that ended the thread, if any
        self._db = None

    def run(self):
        try:
            while not self.stopping.is_set():
                started = time.monotonic()
                self.poll_datasets(started)
                self.poll_processes(started)
                self.stopping.wait(max(0.0, POLL - (time.monotonic() - started)))
        except Exception as e:  # a bug of the soak: reported as a harness error, never hidden
            self.error = e
        finally:
            if self._db is not None:
                self._db.close()

    def stop(self):
        self.stopping.set()
        self.join(10)

    # -- datasets --------------------------------------------------------

    def poll_datasets(self, now):
        rows = self.read_last_update()
        with self.lock:
            for dataset, value in rows.items():
                if dataset in self.writes and value != self.values.get(dataset):
                    self.values[dataset] = value
                    self.writes[dataset].append(now)

    def read_last_update(self):
        if self._db is None:
            if not self.tree.db_path.exists():
                return {}
            self._db = sqlite3.connect(f"file:{self.tree.db_path}?mode=ro", uri=True, timeout=1.0,
                                       check_same_thread=False)
        try:
            return dict(self._db.execute("SELECT key, value FROM last_update"))
        except sqlite3.Error:
            return {}  # not created yet, or busy this instant: the next poll sees the write

    def writes_of(self, dataset):
        with self.lock:
            return list(self.writes[dataset])

    def has_written_all(self):
        with self.lock:
            return all(self.writes.values())

    # -- processes -------------------------------------------------------

    def poll_processes(self, now):
        mdwd = self.tree.process
        if not self.tree.alive():
            return
        try:
            before = _live_children(mdwd)
            fds, rss = mdwd.num_fds(), mdwd.memory_info().rss / 2**20
            if _live_children(mdwd) == before:
                self.resources.append((now, fds - 2 * before, rss))
        except psutil.Error:
            return
        for process in self.tree.descendants():
            try:
                name, status, ppid, created = process.name(), process.status(), process.ppid(), process.create_time()
            except psutil.Error:
                continue
            self.seen.setdefault(process.pid, name)
            if status == psutil.STATUS_ZOMBIE:
                self.note_zombie((process.pid, created), now, name, ppid)

    def note_zombie(self, key, now, name, ppid):
        entry = self.zombies.setdefault(key, [now, now, name, ppid, False])
        entry[1] = now
        if not entry[4] and entry[1] - entry[0] > ZOMBIE_LIMIT:
            entry[4] = True
            parent = "mdwd" if ppid == self.tree.pid else f"{self.seen.get(ppid, '?')} (pid {ppid})"
            self.on_zombie(entry[0], f"pid {key[0]} ({name}), a child of {parent}, has been a zombie for "
                                     f"more than {ZOMBIE_LIMIT:g}s: its parent does not reap it")

    def max_zombie_age(self):
        return max((last - first for first, last, *_ in self.zombies.values()), default=0.0)

    def resource_window(self, start, end):
        """(median own fds, median RSS in MiB) of mdwd over the samples taken in [start, end], or None.

        The median, not the extremes: a control connection open at one instant, or a
        child counted live whose pipes were just closed, moves one sample, not half."""
        samples = [(fds, rss) for t, fds, rss in self.resources if start <= t <= end]
        if not samples:
            return None
        return statistics.median_low(f for f, _ in samples), statistics.median_low(r for _, r in samples)


ZOMBIE_LIMIT = 5.0


def _live_children(process):
    return sum(1 for child in process.children() if child.status() != psutil.STATUS_ZOMBIE)


class StatusPoller(threading.Thread):
    """`mdwctl status --json` every `every` seconds: the latest answer, and a compact history."""

    def __init__(self, tree, every=3.0, keep=2000):
        super().__init__(name="soak-status", daemon=True)
        self.tree = tree
        self.every = every
        self.latest = None
        self.history = collections.deque(maxlen=keep)  # (monotonic time, {worker: compact row})
        self.stopping = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stopping.is_set():
                self.poll_once()
                self.stopping.wait(self.every)
        except Exception as e:
            self.error = e

    def poll_once(self):
        status = self.tree.status() if self.tree.alive() else None
        if status is not None:
            self.latest = status
            self.history.append((time.monotonic(), {name: compact(row) for name, row in self.tree.rows(status).items()}))

    def stop(self):
        self.stopping.set()
        self.join(20)

    def near(self, when):
        """{worker: compact row} from the poll closest to `when`, or {}."""
        return min(self.history, key=lambda snap: abs(snap[0] - when), default=(None, {}))[1]


def compact(row):
    """One worker's status row in a line: state, pid, restarts, last exit."""
    text = f"{row.get('state')} pid {row.get('pid')}, restarts {row.get('restarts')}"
    last = row.get("last_exit")
    if last:
        text += f", last exit {last.get('signal') or last.get('code')} ({last.get('reason')}"
        text += f": {last.get('detail')}" if last.get("detail") else ""
        text += f"; doing {last.get('doing')[:60]!r})" if last.get("doing") else ")"
    return text
