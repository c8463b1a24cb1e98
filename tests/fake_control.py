"""A stand-in for mdwd's control socket: a unix-socket server thread answering JSON lines.

    with FakeControl(tmp_path / "mdwd.sock", rows=[worker_row("watchlist")]) as fake:
        ControlClient(fake.path).call("status")    # {"ok": true, "supervisor": {...}, "workers": [...]}
        fake.requests                               # [{"cmd": "status"}, ...]

`restart` answers ok for known names or "all" (recording them in `restarted`,
and its `last` list, if any, in `restarted_last`) and {"ok": false, "kind":
"unknown_name"} otherwise; `mode` = "silent" closes connections without answering, "hang"
keeps them open without answering (until stop), "garbage" answers something
that is not JSON.
"""
from __future__ import annotations

import copy
import json
import os
import socketserver
import threading

__all__ = ["FakeControl", "worker_row"]


def worker_row(name, kind=None, *, interval=60.0, healthy=True, wanted=True, state=None, **fields):
    """A status row shaped like supervisor/status.py: row()."""
    row = {
        "name": name, "kind": kind or name, "interval": interval, "wanted": wanted,
        "state": state or ("RUNNING" if healthy else "BACKOFF"), "healthy": healthy,
        "pid": 4242 if healthy else None, "uptime_s": 120.5 if healthy else None,
        "restarts": 2, "restarts_by_reason": {"hang": 1, "crash": 1},
        "last_beat_age_s": 0.4, "last_cycle_ok_age_s": 3.2, "phase": "fetch", "item": "TSLA",
        "last_cycle": {"ok": True, "duration": 1.5, "counts": {}, "error": None},
        "last_exit": {"code": None, "signal": 9, "reason": "hang", "detail": "no heartbeat for 30.0s",
                      "doing": "fetch TSLA"},
        "rss_mb": 81.5, "backoff_s": 0.0 if healthy else 8.0, "max_beat_gap_s": 1.1,
        "log_lines_dropped": 0, "reported": {}, "cycles_ok": 40, "cycles_failed": 3,
        "cycle_durations": {"buckets": [[0.5, 10], [1.0, 30], [5.0, 43], ["+Inf", 43]],
                            "sum": 52.5, "count": 43},
        "provider_requests": {"sim": {"ok": 400, "error": 3}},
    }
    row.update(fields)
    return row


class _Handler(socketserver.StreamRequestHandler):
    def handle(self):
        fake = self.server.fake
        line = self.rfile.readline(1 << 20)
        try:
            request = json.loads(line)
        except ValueError:
            request = {"cmd": None, "raw": line.decode("utf-8", "replace")}
        with fake.lock:
            fake.requests.append(request)
            mode = fake.mode
        if mode == "silent":
            return
        if mode == "hang":
            fake.released.wait(30)
            return
        if mode == "garbage":
            self.wfile.write(b"this is not json\n")
            return
        self.wfile.write(json.dumps(fake.answer(request)).encode() + b"\n")


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class FakeControl:
    """mdwd's control socket at `path`, serving canned status rows from a thread."""

    def __init__(self, path, rows=(), mode="ok"):
        self.path = str(path)
        self.rows = list(rows)
        self.mode = mode
        self.requests: list[dict] = []
        self.restarted: list[str] = []
        self.restarted_last: list[str] = []
        self.lock = threading.Lock()
        self.released = threading.Event()
        self._server = None
        self._thread = None

    def answer(self, request):
        cmd = request.get("cmd")
        with self.lock:
            if cmd == "status":
                return {"ok": True, "supervisor": {"pid": os.getpid(), "uptime_s": 100.0},
                        "workers": copy.deepcopy(self.rows)}
            if cmd == "restart":
                names = request.get("names") or []
                known = {row["name"] for row in self.rows}
                unknown = [n for n in names if n != "all" and n not in known]
                if unknown:
                    return {"ok": False, "kind": "unknown_name",
                            "error": f"no worker named {unknown[0]!r}; known: {', '.join(sorted(known))}"}
                self.restarted.extend(names)
                self.restarted_last.extend(request.get("last") or [])
                return {"ok": True}
        return {"ok": False, "kind": "bad_request", "error": f"unknown command {cmd!r}"}

    def start(self):
        self._server = _Server(self.path, _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-control", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self.released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()
