"""A local HTTP receiver for alerts: what apprise's json:// posts lands here, in the test's own process.

    with Receiver() as receiver:                     # 127.0.0.1, a free port
        url = receiver.url                           # "json://127.0.0.1:PORT/hook"
        receiver.mode = "fail"                       # answer 500
        receiver.mode = "hang"                       # read the request, never answer (a read timeout)
        receiver.mode = "trickle"                    # answer one byte every 0.2 s, forever (no timeout helps)
        receiver.wait(lambda bodies: len(bodies) >= 2, timeout=10)

`bodies` are the decoded JSON objects of the good answers ({"title", "message", ...}), `arrivals`
their monotonic arrival times, `attempts` every request seen, good or not. Also runs alone for a
manual check: `python -m tests.alert_receiver [PORT]` prints what arrives.
"""
import http.server
import json
import sys
import threading
import time

MODES = ("ok", "fail", "hang", "trickle")


class Receiver:
    def __init__(self, port=0, path="/hook"):
        self.mode = "ok"
        self.path = path
        self.bodies, self.arrivals, self.attempts = [], [], []
        self.lock = threading.Condition()
        self.released = threading.Event()  # ends every hanging or trickling answer
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def wait(self, condition, timeout, what="alerts"):
        """Until condition(bodies) holds; AssertionError after `timeout` seconds, naming what arrived."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while not condition(self.bodies):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out after {timeout}s waiting for {what}; received: " + "".join(
                        f"\n--- {b.get('title')}\n{b.get('message')}" for b in self.bodies))
                self.lock.wait(min(left, 0.05))
            return list(self.bodies)

    def titles(self):
        with self.lock:
            return [b.get("title", "") for b in self.bodies]

    def _handler(self):
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                mode = receiver.mode
                with receiver.lock:
                    receiver.attempts.append((time.monotonic(), mode))
                    receiver.lock.notify_all()
                if mode == "hang":
                    receiver.released.wait()
                    return
                if mode == "trickle":
                    self.wfile.write(b"H")
                    while not receiver.released.wait(0.2):
                        self.wfile.write(b"T")
                        self.wfile.flush()
                    return
                if mode == "fail":
                    self.send_response(500)
                    self.end_headers()
                    return
                try:
                    body = json.loads(data)
                except ValueError:
                    body = {"raw": data.decode(errors="replace")}
                with receiver.lock:
                    receiver.bodies.append(body)
                    receiver.arrivals.append(time.monotonic())
                    receiver.lock.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler


if __name__ == "__main__":
    with Receiver(int(sys.argv[1]) if len(sys.argv) > 1 else 8089) as r:
        print(f"listening: {r.url}", flush=True)
        seen = 0
        while True:
            bodies = r.wait(lambda b: len(b) > seen, timeout=10**9)
            for body in bodies[seen:]:
                print(f"--- {time.strftime('%H:%M:%S')} {body.get('title')}\n{body.get('message')}", flush=True)
            seen = len(bodies)
