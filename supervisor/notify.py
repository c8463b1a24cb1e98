"""systemd notification (sd_notify) through the sdnotify package.

Without NOTIFY_SOCKET every method is a no-op. The watchdog is pinged every
WATCHDOG_USEC/2, and only when WATCHDOG_PID is unset or names this process.
The supervisor calls `watchdog_ping` only at the end of a full loop pass, so
a blocked loop stops the pings and systemd restarts the service.
"""
import os

import sdnotify


class SystemdNotifier:
    def __init__(self, now, environ=os.environ, pid=None):
        pid = os.getpid() if pid is None else pid
        self.enabled = bool(environ.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        if self._notifier and self._notifier.socket:
            self._notifier.socket.setblocking(False)  # a full systemd queue must never block the loop
        self.watchdog_interval = None
        usec, watchdog_pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
        if self.enabled and usec and usec.isdigit() and int(usec) > 0:
            if not watchdog_pid or watchdog_pid == str(pid):
                self.watchdog_interval = int(usec) / 2e6
        self.next_ping = now
        self.status = None
        self.ready = False

    def _send(self, text):
        if self._notifier:
            self._notifier.notify(text)

    def set_status(self, text):
        if text != self.status:
            self.status = text
            self._send(f"STATUS={text}")

    def send_ready(self, status):
        self.ready = True
        self.status = status
        self._send(f"READY=1\nSTATUS={status}")

    def watchdog_ping(self, now):
        if self.watchdog_interval is not None and now >= self.next_ping:
            self._send("WATCHDOG=1")
            self.next_ping = now + self.watchdog_interval

    def watchdog_trigger(self):
        self._send("WATCHDOG=trigger")

    def stopping(self, status):
        self.status = status
        self._send(f"STOPPING=1\nSTATUS={status}")

    def next_deadline(self):
        return self.next_ping if self.watchdog_interval is not None else None
