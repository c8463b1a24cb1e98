"""Fakes for the alerts worker's logic: a clock, the supervisor and the store it reads, and a sender.

`Harness` builds an AlertWorker over the real outbox (SQLite in tmp_path), the
real event journal (supervisor/events.py) behind a fake control socket, status
rows and store answers a test sets, and a sender that records each message or
fails on request; `harness.restart()` is a new process over the same outbox.
"""
import datetime

from supervisor.events import EventJournal
from supervisor.shared.control_client import ControlError
from workers.alerts import settings as settings_module
from workers.alerts.deliver import SendFailed
from workers.alerts.outbox import Outbox
from workers.alerts.service import AlertWorker, make_destinations
from workers.store import StoreError
from workers.store.history import iso_z  # the reader's form of `at`

EPOCH = 1_800_000_000.0  # 2027-01-15 08:00:00 UTC


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t

    def wall(self):
        return EPOCH + self.t

    def text(self):
        return datetime.datetime.fromtimestamp(self.wall(), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class FakeSources:
    """The supervisor (its real journal behind a fake socket, status rows) and the store, as a test sets them."""

    def __init__(self, clock):
        self.journal = EventJournal(clock.wall, boot_id="boot1")
        self.status_rows = []
        self.dataset_updates = {}
        self.limits = {}
        self.recorded = []  # signals, as StoreReader.signals gives them
        self.control_down = False
        self.store_down = False

    def events(self, after):
        self._control()
        answer = self.journal.after(after, 1000)
        return answer["events"], answer["missed"]

    def rows(self):
        self._control()
        return self.status_rows

    def updates(self, rows):
        self._store()
        return self.dataset_updates, self.limits

    def signals(self, after_id):
        self._store()
        if after_id is None:
            return [], max((s["id"] for s in self.recorded), default=0)
        found = [s for s in self.recorded if s["id"] > after_id]
        return found, found[-1]["id"] if found else after_id

    def store_failed(self):
        pass

    def _control(self):
        if self.control_down:
            raise ControlError("cannot reach mdwd at /x/mdwd.sock: Connection refused; is mdwd running?")

    def _store(self):
        if self.store_down:
            raise StoreError(None, "read failed: database is locked")


class FakeSender:
    def __init__(self):
        self.sent = []  # (label, title, body)
        self.failing = {}  # label -> reason
        self.crash_after_send = False

    def label(self, url):
        return url.split("/hook")[0] if url.startswith("json://") else url.split("://")[0] + "://x"

    def send(self, destination, title, body):
        if destination.label in self.failing:
            raise SendFailed(self.failing[destination.label])
        self.sent.append((destination.label, title, body))
        if self.crash_after_send:
            raise SystemExit("killed between the send and its mark")

    def titles(self, label=None):
        return [t for lab, t, _ in self.sent if label is None or lab == label]


class Harness:
    def __init__(self, tmp_path, section=None, urls=("json://127.0.0.1:9001/hook",)):
        self.dir = tmp_path
        self.clock = Clock()
        self.fake = FakeSources(self.clock)
        self.sender = FakeSender()
        self.section = {"urls": list(urls), **(section or {})}
        self.beats = []
        self.start()

    def start(self, handed_over=None):
        self.settings = settings_module.Settings.from_sections(self.section)
        targets = settings_module.targets(self.section, str(self.dir), {})
        self.outbox = Outbox(str(self.dir), wall_clock=self.clock.wall)
        self.destinations = make_destinations(targets, self.sender, self.settings)
        self.worker = AlertWorker(self.settings, self.destinations, self.outbox, self.fake, self.sender,
                                  beat=lambda phase, item=None: self.beats.append((phase, item)), origin="mdw@test",
                                  clock=self.clock, wall_clock=self.clock.wall)
        self.worker.resume(handed_over)

    def restart(self, handed_over=None):
        self.outbox.close()
        self.start(handed_over)

    def run_pass(self, advance=1.0):
        problems = self.worker.take_in()
        self.worker.deliver()
        self.clock.t += advance
        return problems

    def passes(self, n, advance=1.0):
        for _ in range(n):
            self.run_pass(advance)

    def signal(self, kind, symbol, direction="bullish", score=None, **values):
        new_id = len(self.fake.recorded) + 1
        self.fake.recorded.append({"id": new_id, "at": iso_z(self.clock.text()), "kind": kind, "symbol": symbol,
                                  "direction": direction, "score": score, "values": values})
