"""HTTP API throughput: our app as the api worker serves it (granian) against Bottle's default server.

Both servers run at the same time as separate processes on 127.0.0.1 over
one store filled with realistic data (150 watchlist rows, 400 whale flows of
the last hours, 150 rows per scanner); `wrk --latency` with 32 connections
for 20 s hits /api/last_update and /api/whale_flows?limit=100 on each in turn.
The app is identical in both (create_app with the worker's 1 s response
cache); only the server differs: granian started by the api worker's own code
(api/worker.py, api/server.py) with the [api] defaults (2 serving processes on
one port, 4 threads each), and `bottle.run(server="wsgiref")`,
single-threaded. No supervisor runs, so the status source takes its
"unreachable" path (one failed connect per second) and staleness uses the
fallback limits.

Targets, per endpoint: ours >= 5x the requests/s of Bottle's default server,
and our p99 latency <= 25 ms. waitress and cheroot (not dependencies) are
measured too when importable, one process each with the same threads, for
comparison only.

What we found on the 2-core development box (wrk shares the two cores):
- The app is cheap: a response-cache hit costs ~12 us in-process (the cache
  sits in front of Bottle's router), an uncached /api/whale_flows?limit=100
  ~2-3 ms (mostly the store's row conversion). What limits a Python server
  here is its own per-request work under the GIL.
- Bottle's wsgiref server is single-threaded and closes every connection,
  yet with responses this cheap it answers ~1,100-3,000 requests/s (it varies
  from run to run: connections queue on its backlog of 5 and wait out SYN
  retries, which is also why its p99 is ~0.5-1.2 s).
- waitress, which served the API first, topped out at ~3,900 requests/s in one
  process and ~5,700-6,900 in two sharing a socket, with a p99 of 12-30 ms
  (its Python event loop hands every request to a thread and back): 2.4-4.3x
  Bottle's server, short of 5x. cheroot did no better than one waitress
  process. A bare hello-world app gave the same ceilings, so no change to our
  app could have closed the gap.
- granian parses HTTP and drives the sockets in Rust and calls the app from
  its Python threads: ~32,000 requests/s on /api/last_update and ~24,000 on
  /api/whale_flows?limit=100 in two processes, p99 2-5 ms, whatever the thread
  count (1, 2 or 8).
- Since the serving processes accept on the api worker's one socket
  (api/listener.py) instead of SO_REUSEPORT listeners of their own: ~45,000
  and ~32,000 requests/s, p99 3.6 and 6.6 ms; the old listeners, measured
  just before on the same (shared) box, gave 31,700 and 24,300, p99 7.2 and
  14.4 ms. One accept queue for both processes does not cost throughput here.

wrk comes from the Debian package `wrk`; if it is missing the benchmark
installs it with `apt-get install -y wrk` (as root), or says how to.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from bench.common import work_dir

ENDPOINTS = ("/api/last_update", "/api/whale_flows?limit=100")
OURS = "granian"
SERVERS = (OURS, "wsgiref")
OPTIONAL_SERVERS = ("waitress", "cheroot")  # measured when importable, for comparison only
TARGET_RATIO = 5.0
TARGET_P99_MS = 25.0


# -- the store --------------------------------------------------------------

def fill_store(state_dir, seed=7):
    """A store like a busy trading day's: 150 symbols, 400 whale flows in the last 5 hours."""
    from workers.store import StoreWriter

    rng = random.Random(seed)
    now = dt.datetime.now(dt.timezone.utc)
    symbols = [f"S{i:03d}" for i in range(150)]
    writer = StoreWriter(state_dir)
    writer.replace_snapshot("watchlist", [
        {"symbol": s, "price": round(rng.uniform(5, 900), 2), "daily_change": round(rng.uniform(-20, 20), 2),
         "daily_change_pct": round(rng.uniform(-8, 8), 3), "volume": rng.randrange(10**5, 10**8)}
        for s in symbols])
    flows = []
    for i in range(400):
        strike = round(rng.uniform(5, 900) / 5) * 5 + i % 7
        volume, mark = rng.randrange(100, 50000), round(rng.uniform(0.05, 40), 2)
        flows.append({
            "symbol": rng.choice(symbols), "type": rng.choice(("CALL", "PUT")), "strike": float(strike),
            "whale_score": round(rng.uniform(50, 5000), 1), "volume": volume,
            "open_interest": rng.randrange(10, 90000), "vol_oi": round(rng.uniform(0.5, 40), 2),
            "premium": mark, "total_premium": round(volume * mark * 100, 2), "delta": round(rng.uniform(-1, 1), 3),
            "expiry": (now + dt.timedelta(days=rng.randrange(1, 60))).strftime("%Y-%m-%d"),
            "dte": rng.randrange(1, 60), "iv": round(rng.uniform(0.1, 2.0), 3),
            "underlying_price": round(rng.uniform(5, 900), 2),
            "detected_at": (now - dt.timedelta(minutes=rng.randrange(0, 300))).strftime("%Y-%m-%d %H:%M:%S"),
        })
    writer.record_whale_flows(flows, retention_days=1)
    writer.replace_snapshot("macd_scanner", [
        {"symbol": s, "price": 100.0, "price_change": 1.0, "price_change_pct": rng.uniform(-5, 5),
         "macd": 0.5, "signal": 0.4, "histogram": 0.1, "bullish_cross": rng.random() < 0.1,
         "bearish_cross": False, "trend": "bullish"} for s in symbols])
    writer.close()


# -- the servers (each in a child process) -------------------------------------

def serve(kind, state_dir, port):
    """Child process: serve the app with `kind` until killed."""
    import logging
    from types import SimpleNamespace

    import bottle

    from api.worker import DEFAULTS, ApiWorker

    logging.basicConfig(level=logging.WARNING)
    section = dict(DEFAULTS, host="127.0.0.1", port=port, token="")
    spec = SimpleNamespace(name="api", interval=5.0, heartbeat_timeout=30.0, sections={"api": section})
    worker = ApiWorker(SimpleNamespace(spec=spec, name="api", interval=5.0, state_dir=state_dir), environ={})
    if kind == OURS:  # exactly as the api worker serves: granian, [api] processes and threads
        worker.open_store()
        worker.bind()
        print(f"PORT {worker.server.port}", flush=True)
        worker.start()
        while worker.server.alive:
            time.sleep(1)
        return 1
    app = worker.make_app()  # the same app, the same store and status sources
    print(f"PORT {port}", flush=True)
    if kind == "waitress":
        import waitress

        waitress.serve(app, host="127.0.0.1", port=port, threads=DEFAULTS["threads"], _quiet=True)
    elif kind == "cheroot":
        from cheroot import wsgi

        wsgi.Server(("127.0.0.1", port), app, numthreads=DEFAULTS["threads"]).safe_start()
    else:
        bottle.run(app, server="wsgiref", host="127.0.0.1", port=port, quiet=True)
    return 0


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(kind, state_dir, preexec_fn=None):
    """The server process and its port, once it answers; `preexec_fn` runs in it before it starts."""
    port = 0 if kind == OURS else free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_api", "--serve", kind, "--state", state_dir,
                             "--port", str(port)], stdout=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=preexec_fn)
    line = proc.stdout.readline()
    if not line.startswith("PORT "):
        stop_server(proc)
        raise RuntimeError(f"the {kind} server did not start (said {line!r})")
    port = int(line.split()[1])
    deadline = time.monotonic() + 15
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/last_update", timeout=2) as r:
                r.read()
            return proc, port
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_server(proc)
                raise RuntimeError(f"the {kind} server never answered on port {port}")
            time.sleep(0.05)


def stop_server(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


# -- wrk ------------------------------------------------------------------

def ensure_wrk():
    """The path of wrk, installing the Debian package if needed; None (and why, printed) if impossible."""
    path = shutil.which("wrk")
    if path:
        return path
    if shutil.which("apt-get") and os.geteuid() == 0:
        print("wrk is missing: installing it with `apt-get install -y wrk`", flush=True)
        result = subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, text=True)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True)
            result = subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], capture_output=True, text=True)
        if shutil.which("wrk"):
            return shutil.which("wrk")
        print(f"apt-get install -y wrk failed:\n{result.stdout[-800:]}{result.stderr[-800:]}", file=sys.stderr)
    print("this benchmark needs wrk: install the Debian package (`apt-get install -y wrk`, as root)",
          file=sys.stderr)
    return None


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text):
    number, unit = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text).groups()
    return float(number) * _UNITS[unit]


def parse_wrk(output):
    """requests/s, p50/p99 in ms, requests, errors (socket errors + non-2xx) from `wrk --latency`."""
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", output).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": rps, "p50": p50, "p99": p99, "requests": requests,
            "errors": errors + (int(non2xx.group(1)) if non2xx else 0)}


def run_wrk(wrk, url, connections, seconds, threads):
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    result = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
    return parse_wrk(result.stdout)


# -- main -----------------------------------------------------------------

def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_api", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=20, help="seconds per wrk run (20)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument("--serve", choices=SERVERS + OPTIONAL_SERVERS, help=argparse.SUPPRESS)
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.serve:
        return serve(args.serve, args.state, args.port)

    wrk = ensure_wrk()
    if wrk is None:
        return 2
    kinds = SERVERS + tuple(k for k in OPTIONAL_SERVERS if importlib.util.find_spec(k) is not None)
    from api.worker import DEFAULTS, RESPONSE_CACHE_TTL_S

    extra = [k for k in kinds if k in OPTIONAL_SERVERS]
    print(f"{os.cpu_count()} CPUs; wrk -t{args.wrk_threads} -c{args.connections} -d{args.duration}s --latency; "
          f"{OURS} ({DEFAULTS['processes']} processes x {DEFAULTS['threads']} threads, as the api worker runs) "
          f"vs bottle.run(server='wsgiref'){''.join(f' and {k} (1 process, comparison only)' for k in extra)}; "
          f"response cache {RESPONSE_CACHE_TTL_S:g}s", flush=True)
    results = {}
    with work_dir("api") as directory:
        state_dir = os.path.join(directory, "state")
        fill_store(state_dir)
        servers = {}
        try:
            for kind in kinds:
                servers[kind] = start_server(kind, state_dir)
            for endpoint in ENDPOINTS:
                for kind in kinds:
                    url = f"http://127.0.0.1:{servers[kind][1]}{endpoint}"
                    results[endpoint, kind] = r = run_wrk(wrk, url, args.connections, args.duration,
                                                           args.wrk_threads)
                    print(f"{endpoint:28} {kind:9} {r['rps']:9.0f} req/s  p50 {r['p50']:7.2f} ms  "
                          f"p99 {r['p99']:8.2f} ms  ({r['requests']} requests, {r['errors']} errors)",
                          flush=True)
        finally:
            for proc, _ in servers.values():
                stop_server(proc)
    missed = []
    for endpoint in ENDPOINTS:
        for kind in OPTIONAL_SERVERS:
            if (endpoint, kind) in results:
                other = results[endpoint, kind]
                print(f"{endpoint:28} {kind}/wsgiref: {other['rps'] / results[endpoint, 'wsgiref']['rps']:.1f}x "
                      f"requests/s, p99 {other['p99']:.2f} ms (comparison only)")
        ours, bottle_default = results[endpoint, OURS], results[endpoint, "wsgiref"]
        ratio = ours["rps"] / bottle_default["rps"] if bottle_default["rps"] else float("inf")
        p99_ratio = bottle_default["p99"] / ours["p99"] if ours["p99"] else float("inf")
        print(f"{endpoint:28} {OURS}/wsgiref: {ratio:.1f}x requests/s (target >= {TARGET_RATIO:g}x), "
              f"p99 {ours['p99']:.2f} ms (target <= {TARGET_P99_MS:g} ms), wsgiref p99 {p99_ratio:.1f}x ours")
        if ratio < TARGET_RATIO:
            missed.append(f"{endpoint}: {ratio:.1f}x < {TARGET_RATIO:g}x")
        if ours["p99"] > TARGET_P99_MS:
            missed.append(f"{endpoint}: p99 {ours['p99']:.2f} ms > {TARGET_P99_MS:g} ms")
        if ours["errors"]:
            missed.append(f"{endpoint}: {ours['errors']} errors on {OURS}")
    print("targets met" if not missed else "targets missed: " + "; ".join(missed))
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
