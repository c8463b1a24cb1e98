"""The supervisor: one single-threaded loop over named steps.

    run_once = wait_for_events -> handle_signals -> reap_children
               -> check_children -> start_children -> notify_systemd

Nothing here blocks except `wait_for_events`, and it never waits past the
nearest deadline. Signals arrive as bytes on the wake-up fd (see host.py);
they are handled here, by name, never inside a signal handler.

What a person should hear about (a kill for a failure, a crash loop and its
end, escalation, ready, stopping, stopped) is appended to `journal`
(supervisor/events.py), which the alerts worker pulls over the control
socket; the loop itself delivers nothing. On shutdown the workers whose kind
goes last (`stop_last`: the alerts worker) are stopped only once every other
has exited, so the stop itself can still be told.
"""
import collections
import logging
import signal

from supervisor import status
from supervisor.events import EventJournal
from supervisor.shared import protocol
from supervisor.logs import ChildOutput
from supervisor.reload import reload_config
from supervisor.states import RUNNING_STATES, STOPPING_STATES, WAITING_STATES, StopReason, WorkerState
from supervisor.worker import Worker

log = logging.getLogger("mdwd")
S = WorkerState
MAX_TICK = 1.0  # wake at least this often, to refresh the status countdowns
RSS_CHECK_EVERY = 1.0
HEARTBEAT_READ_LIMIT = 64 * 1024
DUPLICATE_SIGNAL_WINDOW = 0.5  # a second SIGINT sooner than this is the same Ctrl-C delivered twice
LOG_READ_LIMIT = 1024 * 1024  # per pass and child; a flood beyond it waits, blocked, in its own pipe
LEFTOVER_TIMEOUT = 2.0  # at exit, how long to wait for killed orphans to be reaped
DEFERRED_RESTART_LIMIT = 60.0  # a worker asked to restart last waits at most this long for the others


class Channel:
    """One pipe from a child: its heartbeat stream or its output stream."""

    def __init__(self, worker, fd, kind, reader):
        self.worker, self.fd, self.kind, self.reader = worker, fd, kind, reader


class Supervisor:
    def __init__(self, config, host, notifier, formatter, load_config, control=None):
        """`load_config(path)` reads the config again on reload (config.load with the registry bound)."""
        self.config = config
        self.host = host
        self.control = control  # a ControlServer, or None
        self.notifier = notifier
        self.formatter = formatter
        self.load_config = load_config
        now = host.now()
        self.workers = {name: Worker(spec, now) for name, spec in config.enabled_workers.items()}
        self.channels = {}  # fd -> Channel
        self.by_pid = {}  # pid -> Worker
        self.pending_signals = collections.deque()
        self.shutting_down = False
        self.failures = collections.deque()  # monotonic times of failed exits, for escalation
        self.escalated = False
        self.started_at = now
        self.deferred_restarts = {}  # name -> when to restart it anyway: the workers asked to restart last
        self.journal = EventJournal(host.wall)
        self.others_stopped = False  # shutting down: every worker but the stop_last ones has exited

    # -- the loop ----------------------------------------------------------

    def run(self):
        """Run until shut down; return the process exit code."""
        self.host.install_signal_handlers()
        log.info("supervising %d workers: %s", len(self.workers), ", ".join(self.workers))
        try:
            while not self.finished:
                self.run_once()
        except Exception:
            log.critical("supervisor loop failed; killing every child", exc_info=True)
            self.kill_all_now()
            self.reap_leftovers()
            return 1
        finally:
            if self.control:
                self.control.close()
        self.reap_leftovers()
        self.log_summary()
        log.info("all children stopped; exiting")
        self.host.flush_log()
        return 0

    def reap_leftovers(self):
        """Before exiting: kill and reap every process still our child (orphans we adopted as subreaper)."""
        for pid, wait_status in self.host.reap_leftovers(LEFTOVER_TIMEOUT):
            log.info("reaped pid %d at exit (%s)", pid, "an orphaned descendant" if pid not in self.by_pid else "a worker")

    @property
    def finished(self):
        return self.shutting_down and not any(w.has_process for w in self.workers.values())

    def run_once(self):
        self.wait_for_events(self.tick_timeout())
        self.handle_signals()
        self.reap_children()
        self.check_children()
        self.start_children()
        self.notify_systemd()

    def tick_timeout(self):
        if self.pending_signals:
            return 0.0
        now = self.host.now()
        deadlines = [w.next_deadline() for w in self.workers.values()]
        if not self.escalated:
            deadlines.append(self.notifier.next_deadline())
        if self.control:
            deadlines.append(self.control.next_deadline())
        nearest = min((d for d in deadlines if d is not None), default=now + MAX_TICK)
        return min(MAX_TICK, max(0.0, nearest - now))

    # -- step 1: events -----------------------------------------------------

    def wait_for_events(self, timeout):
        fds, signals = self.host.wait(timeout)
        self.pending_signals.extend(signals)
        for fd in fds:
            channel = self.channels.get(fd)
            if channel is not None:  # may have been closed earlier in this pass
                self.read_channel(channel)
            elif self.control and self.control.owns(fd):
                self.control.on_ready(fd, self.host.now())
        if self.control:
            self.control.check_idle(self.host.now())

    def read_channel(self, channel):
        """Read one pipe of a child. Whatever its bytes do, they cost that channel and its worker only."""
        try:
            limit = HEARTBEAT_READ_LIMIT if channel.kind == "heartbeat" else LOG_READ_LIMIT
            data = self.host.read(channel.fd, limit)
            if data is None:
                return
            now = self.host.now()
            if channel.kind == "log":
                self.host.write_log((channel.reader.feed(data, now) if data else channel.reader.close(now)).encode())
            elif data:
                self.read_heartbeats(channel, data, now)
            if not data:  # EOF: the child is exiting (or closed the pipe); the reap follows
                self.close_channel(channel)
        except protocol.ProtocolError as e:
            self.channel_failed(channel, str(e))
        except Exception as e:  # a bug met on this channel's input: log it, drop the channel, keep the loop
            log.error("%s: error on its %s pipe; closing it", channel.worker.name, channel.kind, exc_info=True)
            self.channel_failed(channel, f"{channel.kind} pipe: {type(e).__name__}: {e}")

    def read_heartbeats(self, channel, data, now):
        for message in channel.reader.feed(data):
            channel.worker.on_message(message, now)
        self.journal.note_recovery(channel.worker, now)

    def channel_failed(self, channel, why):
        self.close_channel(channel)
        if channel.worker.state in RUNNING_STATES:
            self.stop_worker(channel.worker, StopReason.PROTOCOL, why, S.RESTARTING)

    def close_channel(self, channel):
        if self.channels.pop(channel.fd, None) is not None:
            self.host.unwatch_and_close(channel.fd)

    # -- step 2: signals ----------------------------------------------------

    def handle_signals(self):
        while self.pending_signals:
            signum = self.pending_signals.popleft()
            getattr(self, f"handle_{signal.Signals(signum).name[3:].lower()}")()

    def handle_chld(self):
        """A child ended: reap_children runs on every pass anyway."""

    def handle_term(self):
        """Stop every child gracefully (in parallel) and exit 0."""
        self.begin_shutdown("SIGTERM")

    def handle_int(self):
        """Ctrl-C: like SIGTERM; a second one kills what is left at once."""
        self.begin_shutdown("SIGINT", escalate=True)

    def handle_quit(self):
        """Quick shutdown: SIGKILL every child now."""
        self.begin_shutdown("SIGQUIT")
        self.kill_all_now()

    def handle_hup(self):
        """Re-read the config; restart only what changed; keep running on a bad config."""
        self.reload()

    def handle_usr1(self):
        """logrotate's signal: nothing to reopen (logs go to stderr); noted and ignored."""
        log.info("SIGUSR1: nothing to reopen (mdwd logs to stderr); ignored")

    def handle_usr2(self):
        """Log one status line per worker (what mdwctl status shows), e.g. when the socket is unreachable."""
        for line in status.lines(self.workers.values(), self.host.now()):
            log.info("SIGUSR2: %s", line)

    def begin_shutdown(self, why, escalate=False):
        """Stop every child; `escalate` (a second Ctrl-C) kills what is left at once."""
        if self.shutting_down:
            if escalate and self.host.now() - self.shutdown_started_at >= DUPLICATE_SIGNAL_WINDOW:
                log.warning("%s while stopping: killing what is left now", why)
                self.kill_all_now()
            elif not escalate:
                log.info("%s while stopping: already stopping (a second SIGINT kills what is left)", why)
            return
        self.shutdown_started_at = self.host.now()
        log.info("%s: stopping %d workers", why, sum(w.has_process for w in self.workers.values()))
        self.shutting_down = True
        self.deferred_restarts.clear()
        self.notifier.stopping(f"stopping ({why})")
        self.journal.append("stopping", f"mdwd is stopping ({why})", why=why)
        self.shutdown_why = why
        for worker in self.workers.values():
            if not worker.spec.stop_last:
                self.stop_worker(worker, StopReason.SHUTDOWN, f"supervisor got {why}", S.STOPPING)
        self.stop_the_last()

    def stop_the_last(self):
        """Shutting down: once every other worker has exited, stop those that go last (the alerts worker)."""
        if not self.shutting_down or self.others_stopped:
            return
        if any(w.has_process for w in self.workers.values() if not w.spec.stop_last):
            return
        self.others_stopped = True
        last = [w for w in self.workers.values() if w.spec.stop_last]
        self.journal.append("stopped", "every worker has stopped; mdwd exits", last=[w.name for w in last])
        for worker in last:
            self.stop_worker(worker, StopReason.SHUTDOWN, f"supervisor got {self.shutdown_why} (stopped last)",
                             S.STOPPING)

    def kill_all_now(self):
        for worker in self.workers.values():
            if worker.has_process:
                self.host.signal_group(worker.pid, signal.SIGKILL)  # kills a stopped process too
                worker.on_killed()

    def reload(self):
        """Apply the config file again (supervisor/reload.py); returns the problems that kept it out."""
        return reload_config(self)

    def forget_removed(self):
        for name in [n for n, w in self.workers.items() if w.state is S.REMOVED]:
            del self.workers[name]
            self.deferred_restarts.pop(name, None)

    def start_on_request(self, worker):
        worker.start(self.host.now())

    def stop_on_request(self, worker):
        self.deferred_restarts.pop(worker.name, None)
        self.stop_worker(worker, StopReason.MANUAL, "stop requested", S.STOPPING)

    def restart_on_request(self, workers, last=()):
        """Restart `workers` now, except those named in `last`: they restart once the others run again."""
        now = self.host.now()
        for worker in workers:
            if worker.name in last:
                self.deferred_restarts[worker.name] = now + DEFERRED_RESTART_LIMIT
            else:
                self.stop_worker(worker, StopReason.MANUAL, "restart requested", S.RESTARTING)

    def restart_deferred(self, now):
        """Restart the workers asked to go last, once no other worker is still coming back."""
        if not self.deferred_restarts:
            return
        coming_back = any(w.state in (S.RESTARTING, S.PENDING, S.STARTING) for name, w in self.workers.items()
                          if name not in self.deferred_restarts)
        for name, limit in list(self.deferred_restarts.items()):
            if not coming_back or now >= limit:
                del self.deferred_restarts[name]
                self.stop_worker(self.workers[name], StopReason.MANUAL, "restart requested (last)", S.RESTARTING)

    # -- step 3: reap -------------------------------------------------------

    def reap_children(self):
        for pid, wait_status in self.host.reap():
            worker = self.by_pid.pop(pid, None)
            if worker is None:
                log.info("reaped pid %d, not one of our workers (an orphaned descendant)", pid)
                continue
            for channel in [c for c in self.channels.values() if c.worker is worker]:
                self.read_channel(channel)  # the last words: a traceback, a final beat
                self.close_channel(channel)
            self.host.signal_group(pid, signal.SIGKILL)  # grandchildren left in its group die with it
            now = self.host.now()
            exit_ = worker.on_exited(wait_status, now)
            if exit_.reason.is_failure:
                self.failures.append(now)
            log.log(logging.WARNING if exit_.reason.is_failure else logging.INFO,
                    "%s: pid %d ended: %s; %s", worker.name, pid, exit_.describe(), status.next_step(worker, now))
            self.journal.note_flapping(worker)
        self.forget_removed()

    # -- step 4: check ------------------------------------------------------

    def check_children(self):
        now = self.host.now()
        self.restart_deferred(now)
        self.stop_the_last()
        for worker in list(self.workers.values()):
            if worker.state in STOPPING_STATES:
                if not worker.killed and now >= worker.kill_at:
                    log.warning("%s: pid %d still alive %.1fs after SIGTERM; sending SIGKILL to its group",
                                worker.name, worker.pid, worker.spec.stop_timeout)
                    self.host.signal_group(worker.pid, signal.SIGKILL)
                    worker.on_killed()
                continue
            if worker.state not in RUNNING_STATES:
                continue
            stale = worker.staleness(now)
            if stale is None and worker.spec.max_rss_mb > 0 and now >= worker.next_rss_check:
                stale = self.check_memory(worker, now)
            if stale is not None:
                self.stop_worker(worker, *stale, S.RESTARTING)

    def check_memory(self, worker, now):
        worker.next_rss_check = now + RSS_CHECK_EVERY
        worker.rss_mb = self.host.tree_rss_mb(worker.pid)
        if worker.rss_mb is not None and worker.rss_mb > worker.spec.max_rss_mb:
            return StopReason.MEMORY, f"{worker.rss_mb:.0f} MiB resident > max_rss_mb {worker.spec.max_rss_mb:g}"
        return None

    def stop_worker(self, worker, reason, detail, goal):
        """Stop a worker, then take it to `goal` (STOPPING, RESTARTING or RETIRING).

        A running child gets SIGTERM (then SIGCONT, so a stopped child sees
        it) to its whole group, and SIGKILL after stop_timeout; a child
        already being stopped only changes where it goes after."""
        pid = worker.pid
        if worker.stop(reason, detail, self.host.now(), goal):
            level = logging.WARNING if reason.is_failure else logging.INFO
            log.log(level, "%s: stopping pid %d (%s: %s)", worker.name, pid, reason.value, detail)
            self.host.signal_group(pid, signal.SIGTERM)
            self.host.signal_group(pid, signal.SIGCONT)
            if reason.is_failure:
                self.journal.note_kill(worker, reason.value, detail)

    # -- step 5: start ------------------------------------------------------

    def start_children(self):
        if self.shutting_down:
            return
        now = self.host.now()
        for worker in list(self.workers.values()):
            if worker.state in WAITING_STATES and now >= worker.next_start_at:
                self.spawn(worker, now)

    def spawn(self, worker, now):
        handed_over = worker.handed_over
        try:
            pid, heartbeat_fd, log_fd = self.host.spawn(worker.spec, handed_over, self.config.secret_env)
        except OSError as e:
            worker.on_spawn_failed(e.strerror or str(e), now)
            self.failures.append(now)
            log.error("%s: cannot start a process (%s); retrying in %.1fs [%s]", worker.name, e.strerror or e,
                      worker.backoff_s, worker.state.value)
            self.journal.note_flapping(worker)
            return
        if handed_over:
            log.info("%s: handing '%s' to the new incarnation (its predecessor hung on it)",
                     worker.name, handed_over.text())
        worker.on_spawned(pid, now)
        self.by_pid[pid] = worker
        self.channels[heartbeat_fd] = Channel(worker, heartbeat_fd, "heartbeat", protocol.MessageDecoder())
        output = ChildOutput(worker, self.formatter, now, wall=self.host.wall)
        if self.control:
            output.listener = lambda lines, name=worker.name: self.control.publish(name, lines)
        self.channels[log_fd] = Channel(worker, log_fd, "log", output)
        log.info("%s: started pid %d (%s)", worker.name, pid, worker.spec.kind)

    # -- step 6: systemd ----------------------------------------------------

    def notify_systemd(self):
        if self.shutting_down:
            return  # STOPPING=1 was sent; nothing more to say
        now = self.host.now()
        line = status.summary(self.workers.values(), now)
        if not self.notifier.ready and all(status.settled(w, now) for w in self.workers.values()):
            log.info("ready: %s", line)
            self.notifier.send_ready(line)
            self.journal.append("started", f"mdwd started: {line}", status=line)
        if self.check_escalation(now):
            line = f"escalating: {len(self.failures)} failures within {self.config.escalate_window:g}s; " + line
        self.notifier.set_status(line)
        if not self.escalated:
            self.notifier.watchdog_ping(now)

    def check_escalation(self, now):
        while self.failures and now - self.failures[0] > self.config.escalate_window:
            self.failures.popleft()
        limit = self.config.escalate_after
        if limit and not self.escalated and len(self.failures) >= limit:
            self.escalated = True
            log.error("%d child failures within %gs (escalate_after %d): no longer feeding the systemd "
                      "watchdog, so systemd restarts the whole service", len(self.failures),
                      self.config.escalate_window, limit)
            self.notifier.watchdog_trigger()
            self.journal.append("escalated", f"{len(self.failures)} worker failures within "
                                f"{self.config.escalate_window:g}s: systemd restarts the whole service",
                                failures=len(self.failures))
        return self.escalated

    def log_summary(self):
        for worker in self.workers.values():
            log.info("%s", status.life(worker))
