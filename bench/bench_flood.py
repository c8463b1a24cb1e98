"""A good client of the API while another local process holds 5,000 idle connections to it.

The API is started as the api worker starts it (bench_api's server: ApiWorker's
open_store, bind and start, [api] defaults: 2 serving processes x 4 threads),
with systemd's default soft RLIMIT_NOFILE of 1024, as in production. A good
client asks GET /api/last_update on a new connection every 10 ms (100/s; the
answer is the 1 s response cache's, so this measures the server, not SQLite)
for 20 s: first alone (the baseline), then while a separate process holds
5,000 idle connections: half connect and send nothing, half send half a
request head and stall; each one the server closes is opened again at once,
so 5,000 stay held all along. The client runs in its own process too, so the
holder's work does not share its interpreter.

Targets: under the flood, every request of the good client is answered (no
error, no timeout of 2 s) and its p99 stays under 50 ms; the server holds the
5,000 and closes each idle connection within the header timeout
(api/capacity.py HEADER_TIMEOUT_S, 10 s) plus a second.

Before the fix (granian's default backpressure of 512 connections per
process and 30 s header timeout, 1024 descriptors): ~1,100 idle connections
were enough for every request of a good client to time out, until the held
connections were dropped 30 s later.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import time

import psutil

from bench.common import percentile, work_dir

IDLE = 5000
DURATION_S = 20.0
INTERVAL_S = 0.01
REQUEST_TIMEOUT_S = 2.0
TARGET_P99_MS = 50.0
CLOSE_SLACK_S = 2.0  # the holder times a connection from its connect(), so the wait to be accepted is in it
SYSTEMD_SOFT_LIMIT = 1024
HALF_A_REQUEST = b"GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow"


# -- the holder of idle connections (a process of its own) ---------------------

def raise_own_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def hold(port, count):
    """Keep `count` idle connections open until stdin closes; then print how the server closed them (JSON)."""
    raise_own_limit(count + 256)
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ, None)
    closed_after, unsent, failed = [], [], []

    def open_one(half):
        sock = socket.socket()
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.connect(("127.0.0.1", port))
        selector.register(sock, selectors.EVENT_READ, (time.monotonic(), half))
        if half:
            unsent.append(sock)

    for i in range(count):
        open_one(half=i % 2 == 1)
    print("OPENED", flush=True)
    while True:
        for key, _ in selector.select(timeout=0.05 if unsent else 1.0):
            if key.data is None:
                print(json.dumps({"closed_after": closed_after, "failed": failed}), flush=True)
                return 0
            try:
                data = key.fileobj.recv(4096)
            except ConnectionResetError:
                data = b""
            except OSError as exc:  # the connection was never accepted (a connect that timed out)
                failed.append(exc.strerror or str(exc))
                data = None
            if not data:
                if data is not None:
                    closed_after.append(time.monotonic() - key.data[0])
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_one(key.data[1])
        unsent[:] = [sock for sock in unsent if sock.fileno() >= 0 and not sent_half(sock)]


def sent_half(sock):
    """Send half a request head on a connected socket; False if it is not connected yet."""
    try:
        sock.send(HALF_A_REQUEST)
    except (BlockingIOError, OSError):
        return False
    return True


# -- the good client (a process of its own) ------------------------------------

def good_client(port, seconds, interval):
    """Ask every `interval` for `seconds`; print the latencies of the answers and the failures (JSON)."""
    latencies, failures = [], []
    next_at = time.monotonic()
    deadline = next_at + seconds
    while time.monotonic() < deadline:
        time.sleep(max(0.0, next_at - time.monotonic()))
        started = time.monotonic()
        next_at = max(next_at + interval, started)  # a slow answer delays the next request, never doubles it up
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            conn.request("GET", "/api/last_update")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"status {response.status}")
            else:
                latencies.append(time.monotonic() - started)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
    print(json.dumps({"latencies": latencies, "failures": failures}), flush=True)
    return 0


# -- the run --------------------------------------------------------------------

def me(*args):
    return [sys.executable, "-m", "bench.bench_flood", *map(str, args)]


def measure(port, seconds, sample=lambda: 0):
    """Run the good client for `seconds`; its result, with `sample()` taken every 0.25 s meanwhile."""
    client = subprocess.Popen(me("--client", port, "--duration", seconds), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    samples = []
    try:
        while client.poll() is None:
            samples.append(sample())
            time.sleep(0.25)
        out, err = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    if client.returncode != 0:
        raise RuntimeError(f"the good client failed: {err[-2000:]}")
    return dict(json.loads(out), samples=samples)


def serving_processes(server_pid):
    managers = psutil.Process(server_pid).children(recursive=True)
    return [p for p in managers if p.parent() and p.parent().pid != server_pid]


def held_by(processes):
    return sum(p.num_fds() for p in processes)


def rss_mb(processes):
    return sum(p.memory_info().rss for p in processes) / 2**20


def describe(run):
    ms = [x * 1000 for x in run["latencies"]]
    return (f"{len(ms)} answered, {len(run['failures'])} failed, p50 {percentile(ms, 50):.2f} ms, "
            f"p99 {percentile(ms, 99):.2f} ms, max {max(ms, default=float('nan')):.2f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_flood", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per phase (20)")
    parser.add_argument("--idle", type=int, default=IDLE, help="idle connections held (5000)")
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--hold", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.client:
        return good_client(args.client, args.duration, INTERVAL_S)
    if args.hold:
        return hold(args.hold, args.idle)

    from api.capacity import HEADER_TIMEOUT_S
    from bench.bench_api import OURS, fill_store, start_server, stop_server

    def systemd_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (SYSTEMD_SOFT_LIMIT, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))

    print(f"{os.cpu_count()} CPUs; the API as the api worker serves it, started with a soft open-files limit of "
          f"{SYSTEMD_SOFT_LIMIT}; a good client every {INTERVAL_S * 1000:g} ms for {args.duration:g} s per phase; "
          f"{args.idle} idle connections in the second", flush=True)
    missed = []
    with work_dir("flood") as directory:
        state_dir = os.path.join(directory, "state")
        fill_store(state_dir)
        server, port = start_server(OURS, state_dir, preexec_fn=systemd_limit)
        holder = None
        try:
            serving = serving_processes(server.pid)
            base_fds, base_rss = held_by(serving), rss_mb(serving)
            baseline = measure(port, args.duration)
            print(f"baseline:              {describe(baseline)}", flush=True)
            holder = subprocess.Popen(me("--hold", port, "--idle", args.idle), stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, start_new_session=True)
            assert holder.stdout.readline().strip() == "OPENED"
            deadline = time.monotonic() + 15
            while held_by(serving) - base_fds < args.idle and time.monotonic() < deadline:
                time.sleep(0.05)
            print(f"the server holds {held_by(serving) - base_fds} connections "
                  f"(+{rss_mb(serving) - base_rss:.0f} MB RSS in its serving processes)", flush=True)
            flood = measure(port, args.duration, sample=lambda: held_by(serving) - base_fds)
            held = percentile(flood["samples"], 50)
            print(f"with {args.idle} idle:      {describe(flood)}", flush=True)
            print(f"connections the server held meanwhile: p50 {held:.0f}, min {min(flood['samples'])} (the "
                  "holder opens again each one the server closes)", flush=True)
            holder.stdin.close()
            held_end = json.loads(holder.stdout.readline())
            closes, refused = held_end["closed_after"], held_end["failed"]
        finally:
            if holder is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(holder.pid, signal.SIGKILL)
                holder.wait()
            stop_server(server)
    p99 = percentile([x * 1000 for x in flood["latencies"]], 99)
    base_p99 = percentile([x * 1000 for x in baseline["latencies"]], 99)
    answered = len(flood["latencies"]) / max(1, len(baseline["latencies"]))
    print(f"flood/baseline: {answered:.2f}x requests answered, p50 "
          f"{percentile(flood['latencies'], 50) / percentile(baseline['latencies'], 50):.2f}x, "
          f"p99 {p99 / base_p99:.2f}x (target: no failure, p99 < {TARGET_P99_MS:g} ms)")
    if closes:
        print(f"idle connections the server closed: {len(closes)}, after {min(closes):.2f}..{max(closes):.2f} s "
              f"(p50 {percentile(closes, 50):.2f} s; header timeout {HEADER_TIMEOUT_S:g} s)")
    if refused:
        print(f"connections of the holder that were never accepted: {len(refused)} ({refused[0]})")
    if flood["failures"]:
        missed.append(f"{len(flood['failures'])} failed requests under the flood, e.g. {flood['failures'][0]}")
    if p99 >= TARGET_P99_MS:
        missed.append(f"p99 {p99:.2f} ms >= {TARGET_P99_MS:g} ms under the flood")
    if held < args.idle * 0.95:
        missed.append(f"the server held only {held:.0f} of {args.idle} idle connections (p50)")
    if not closes or max(closes) > HEADER_TIMEOUT_S + CLOSE_SLACK_S:
        missed.append(f"idle connections were not closed within the header timeout + {CLOSE_SLACK_S:g} s"
                      if closes else "the server closed no idle connection")
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
