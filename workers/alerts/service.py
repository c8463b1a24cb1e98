"""The alerts worker (kind "alerts"): tells a person, through apprise, what the service sees.

Each pass (every `interval`, 1 s by default) it beats, then:
1. takes in what is new: the supervisor's journal (`events` over the control
   socket: kills, crash loops, escalation, start and stop), what changed in
   its status rows and the store (quarantines, stale datasets, the Schwab
   login: derive.py), and the signals recorded since its cursor; keeps those
   the config switches on, and records them with the new cursors in one
   transaction of the outbox (outbox.py);
2. delivers what waits, per destination, one message at a time, paced by
   `max_messages_per_minute`: one alert alone, or one digest of all that
   waited (compose.py); a failed send backs off, and is counted (deliver.py).
It reports a good cycle when it could read its sources, its counters and
its failing destinations (as warnings) in a status report.

The supervisor never waits for any of this: a slow or dead receiver costs
this process only. A send that outlasts its timeouts (a receiver trickling
bytes) silences the heartbeat, and the supervisor kills this worker; the
successor is handed the destination it hung on, backs off from it, and
delivers to the others. A stop (SIGTERM: the supervisor stops this worker
last, once every other has exited) makes it take in and deliver once more
(the "stopping" and "stopped" events), within the stop_timeout, then exit.
"""
import datetime
import logging
import signal
import socket
import time

from supervisor.shared.control_client import ControlClient, ControlError, socket_path
from workers.alerts import compose, derive
from workers.alerts import settings as settings_module
from workers.alerts.deliver import AppriseSender, Destination, SendFailed
from workers.alerts.outbox import Outbox
from workers.store import StoreError

log = logging.getLogger("alerts")
CONTROL_TIMEOUT_S = 2.0
EVENT_PAGES = 5  # answers of the `events` command read per pass (200 events each)
SIGNAL_LIMIT = 1000  # signals read per pass
SIGNAL_MAX_AGE_S = 3600.0  # older signals are history, not news (the worker was off, or far behind)
MAX_DIGEST = 1000  # alerts in one message at most
FAILING_AFTER = 3  # consecutive failed sends to a destination before it is a warning
PRUNE_EVERY_S = 3600.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def utc_text(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


class Sources:
    """What a pass reads: the supervisor over its control socket, and the store (opened when first needed)."""

    def __init__(self, control, open_reader, stale_overrides=None):
        self.control = control
        self.open_reader = open_reader
        self.stale_overrides = dict(stale_overrides or {})
        self.reader = None

    def _answer(self, cmd, **args):
        answer = self.control.call(cmd, **args)
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            raise ControlError(f"mdwd refused {cmd}: {answer.get('error') if isinstance(answer, dict) else answer}")
        return answer

    def events(self, after):
        """(events after `after`, how many were missed)."""
        events, missed = [], None
        for _ in range(EVENT_PAGES):
            answer = self._answer("events", after=after)
            events += answer["events"]
            missed = answer.get("missed", 0) if missed is None else missed
            if not answer.get("more") or not answer["events"]:
                break
            after = answer["events"][-1]["id"]
        return events, missed

    def rows(self):
        rows = self._answer("status").get("workers")
        if not isinstance(rows, list):
            raise ControlError("mdwd answered status without worker rows")
        return rows

    def store(self):
        if self.reader is None:
            self.reader = self.open_reader()
        return self.reader

    def updates(self, rows):
        """(last writes per dataset with their staleness, the limits), as /health counts them."""
        from workers.freshness import schedules, stale_after

        limits = stale_after(rows, self.stale_overrides)
        return self.store().last_update(stale_after=limits, schedules=schedules(rows)), limits

    def signals(self, after_id):
        if after_id is None:  # the first pass ever: from now on, not the history
            newest = self.store().signals(limit=1)
            return [], newest[0]["id"] if newest else 0
        found = self.store().signals(after_id=after_id, limit=SIGNAL_LIMIT)
        return found, found[-1]["id"] if found else after_id

    def store_failed(self):
        if self.reader is not None:
            self.reader.close()
        self.reader = None


class AlertWorker:
    """One pass at a time: take_in() then deliver(); see the module docstring."""

    def __init__(self, settings, destinations, outbox, sources, sender, beat, origin,
                 clock=time.monotonic, wall_clock=time.time):
        self.settings = settings
        self.destinations = destinations
        self.outbox = outbox
        self.sources = sources
        self.sender = sender
        self.beat = beat
        self.origin = origin
        self.clock = clock
        self.wall_clock = wall_clock
        self.sent_this_pass = 0
        self.pruned_at = None

    @property
    def usable(self):
        return [d for d in self.destinations if d.url is not None]

    def resume(self, handed_over):
        """Go on where the previous process was: its destinations' failures in a row (their backoff), and
        one more for a destination it was killed on while sending (it hung)."""
        in_a_row = self.outbox.failures_in_a_row()
        for d in self.usable:
            d.failures = in_a_row.get(d.key, 0)
            if handed_over is not None and handed_over.names("send", d.item):
                log.warning("the previous process hung sending to %s; backing off from it", d.label)
                self._failed(d, "the previous process hung sending to it (killed by the supervisor)")
            elif d.failures:
                d.last_error = f"{d.failures} failed sends before a restart"
                d.back_off(self.clock())

    # -- 1. take in --------------------------------------------------------

    def take_in(self):
        """Record what is new; returns the problems that made this pass fail to read a source."""
        problems, alerts, cursors = [], [], {}
        rows = None
        try:
            events, missed = self.sources.events(self.outbox.cursor("events", ""))
            if missed:
                log.warning("%d supervisor events were dropped before this worker could read them", missed)
            alerts += derive.from_events(events)
            if events:
                cursors["events"] = events[-1]["id"]
            rows = self.sources.rows()
        except ControlError as e:
            problems.append(f"cannot ask mdwd: {e}")
        view = derive.ViewDiff(self.outbox.cursor("view"), utc_text(self.wall_clock()))
        if rows is not None:
            view.quarantine(rows)
            view.schwab_login(rows)
        try:
            if rows is not None:
                view.staleness(*self.sources.updates(rows))
            signals, cursors["signals"] = self.sources.signals(self.outbox.cursor("signals"))
            alerts += [a for a in derive.from_signals(signals) if self._news(a) and self.settings.wants_signal(a)]
        except StoreError as e:
            problems.append(f"cannot read {e}")  # "the store: ..." or "dataset 'signals': ..."
            self.sources.store_failed()
        alerts += view.alerts
        cursors["view"] = view.view
        wanted = [a for a in alerts if a.get("signal") or a["kind"] in self.settings.events]
        new = self.outbox.take(wanted, [d.key for d in self.usable], cursors)
        for alert in new:
            log.info("alert: %s", compose.headline(alert))
        self._prune()
        return problems

    def _news(self, alert):
        try:  # the signal history answers ISO 8601 with Z; older rows and the views say 'YYYY-MM-DD HH:MM:SS' (UTC)
            at = datetime.datetime.fromisoformat(alert["at"])
        except (TypeError, ValueError):
            return True
        if at.tzinfo is None:
            at = at.replace(tzinfo=datetime.timezone.utc)
        return self.wall_clock() - at.timestamp() <= SIGNAL_MAX_AGE_S

    def _prune(self):
        if self.pruned_at is None or self.clock() - self.pruned_at >= PRUNE_EVERY_S:
            self.outbox.prune()
            self.pruned_at = self.clock()

    # -- 2. deliver --------------------------------------------------------

    def deliver(self, final=False):
        """Send what waits, destination by destination: one message each, if its rate limit and backoff let
        it go (`final`, stopping: whatever they say, so that the stop is told)."""
        self.sent_this_pass = 0
        for d in self.usable:
            if d.url is None or not (final or d.ready(self.clock())):
                continue
            batch = self.outbox.pending(d.key, MAX_DIGEST)
            if batch:
                title, body = compose.single(batch[0], self.origin) if len(batch) == 1 else \
                    compose.digest(batch, self.origin)
                self._send(d, batch, title, body)

    def _send(self, d, batch, title, body):
        self.beat("send", d.item)
        try:
            self.sender.send(d, title, body)
        except SendFailed as e:
            delay = self._failed(d, str(e))
            log.warning("sending to %s failed: %s; %d waiting, retrying in %.0fs", d.label, e, len(batch), delay)
            return False
        except Exception as e:  # a bug in a plugin costs this send, never the worker
            log.exception("sending to %s failed", d.label)
            self._failed(d, f"{type(e).__name__}: {e}"[:200])
            return False
        d.on_sent(self.clock())
        self.outbox.sent(d.key, [a["id"] for a in batch])
        self.sent_this_pass += 1
        log.info("sent to %s: %s (%d alert%s)", d.label, title, len(batch), "" if len(batch) == 1 else "s")
        return True

    def _failed(self, d, why):
        self.outbox.failed(d.key)
        return d.on_failed(self.clock(), why)

    # -- what the supervisor is told -------------------------------------

    def warnings(self):
        pending = self.outbox.pending_counts()
        out = [f"alerts to {d.source}: {d.problem}" for d in self.destinations if d.problem]
        for d in self.usable:
            if d.failures >= FAILING_AFTER:
                out.append(f"alerts to {d.label} failing ({d.failures} sends in a row: {d.last_error}); "
                           f"{pending.get(d.key, 0)} waiting, next try in {max(0.0, d.retry_at - self.clock()):.0f}s")
        return out if len(out) <= 3 else out[:2] + [f"and {len(out) - 2} more alert destinations failing"]

    def counters(self):
        counts, pending = self.outbox.counts(), self.outbox.pending_counts()
        labels = {d.key: d.label for d in self.usable}
        families = {f"alerts_{name}": {labels[k]: n for k, n in by_key.items() if k in labels}
                    for name, by_key in counts.items()}
        families["alerts_pending"] = {d.label: pending.get(d.key, 0) for d in self.usable}
        return families

    def cycle_counts(self):
        return {"sent": self.sent_this_pass, "pending": sum(self.outbox.pending_counts().values()),
                "destinations": len(self.usable)}


def make_destinations(targets, sender, settings):
    """Destinations with unique labels (a second discord://1...5 is discord://1...5 #2)."""
    out, seen = [], {}
    for target in targets:
        label = sender.label(target.url) if target.url else target.source
        seen[label] = seen.get(label, 0) + 1
        out.append(Destination(target, settings, label if seen[label] == 1 else f"{label} #{seen[label]}"))
    return out


def wait_for_stop(ctx, seconds):
    """Idle `seconds`, beating; True as soon as a stop signal arrives (they are blocked, and taken here)."""
    deadline = time.monotonic() + seconds
    while True:
        ctx.beat("idle")
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if signal.sigtimedwait(STOP_SIGNALS, min(left, ctx.idle_beat_every)) is not None:
            return True


def run(ctx):
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    logging.getLogger("apprise").propagate = False  # its reasons are in our own lines, without its chatter
    section = ctx.spec.sections.get("alerts", {})
    settings = settings_module.Settings.from_sections(section, ctx.spec.sections.get("api"), ctx.interval)
    sender = AppriseSender(settings.timeout)
    destinations = make_destinations(settings_module.targets(section, ctx.state_dir), sender, settings)
    outbox = Outbox(ctx.state_dir)
    dropped = outbox.forget_targets([d.key for d in destinations if d.url])
    if dropped:
        log.info("dropped %d alerts waiting for destinations no longer configured", dropped)
    from workers.store import StoreReader

    sources = Sources(ControlClient(socket_path(ctx.state_dir), timeout=CONTROL_TIMEOUT_S),
                      lambda: StoreReader(ctx.state_dir), settings.stale_after)
    worker = AlertWorker(settings, destinations, outbox, sources, sender, ctx.beat, f"mdw@{socket.gethostname()}")
    worker.resume(ctx.handed_over)
    log.info("delivering alerts to %s", ", ".join(d.label for d in destinations) or "nobody")
    while True:
        started = time.monotonic()
        ctx.beat("take in")
        problems = worker.take_in()
        worker.deliver()
        duration = time.monotonic() - started
        ctx.cycle(not problems, duration, worker.cycle_counts(), "; ".join(problems) or None)
        ctx.report(warnings=worker.warnings(), counters=worker.counters())
        if wait_for_stop(ctx, max(0.0, ctx.interval - duration)):
            break
    log.info("stopping: telling the stop")
    worker.take_in()
    worker.deliver(final=True)
