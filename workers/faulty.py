"""A worker that misbehaves on request, for the supervisor's tests and benchmarks.

It beats every `beat_interval` seconds (and reports an ok cycle every
`interval`) for `after` seconds, then does what `mode` says. Each mode is one
way a real scanner can fail; the supervisor must detect and replace all of them.
"""
import ctypes
import importlib
import logging
import os
import signal
import socket
import sys
import time

log = logging.getLogger("faulty")


def run(ctx):
    opts = ctx.options
    for module in opts["import_modules"]:
        importlib.import_module(module)
    mode = opts["mode"]
    inherited = sorted(k for k in os.environ if k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_")))
    secrets = sorted(k for k in os.environ if k.startswith(("SCHWAB_", "MDW_API_TOKEN")))
    log.info("started in mode %s; systemd variables inherited: %s; secret variables visible: %s", mode,
             ", ".join(inherited) or "none", ", ".join(secrets) or "none")
    if mode == "crash_at_start":
        log.error("crashing at start on purpose")
        sys.exit(1)
    beat_log = open(opts["beat_log"], "a", buffering=1) if opts["beat_log"] else None
    started = last_cycle = time.monotonic()
    while mode == "healthy" or time.monotonic() - started < opts["after"]:
        _beat(ctx, beat_log)
        if time.monotonic() - last_cycle >= ctx.interval and mode != "no_cycles":
            ctx.cycle(True, 0.0, {"beats": 1})
            last_cycle = time.monotonic()
        time.sleep(opts["beat_interval"])
    log.warning("misbehaving now: %s", mode)
    MISBEHAVIOURS[mode](ctx, beat_log)


def _beat(ctx, beat_log, phase="work", item="ok"):
    ctx.beat(phase, item)
    if beat_log:
        beat_log.write(f"{os.getpid()} {time.monotonic():.6f}\n")


def _hang_sleep(ctx, beat_log):
    _beat(ctx, beat_log, "fetch", "HANG")
    time.sleep(10**6)


def _busy_loop(ctx, beat_log):
    _beat(ctx, beat_log, "compute", "SPIN")
    while True:
        pass


def _sigstop(ctx, beat_log):
    _beat(ctx, beat_log, "fetch", "STOPPED")
    os.kill(os.getpid(), signal.SIGSTOP)
    time.sleep(10**6)


def _socket_block(ctx, beat_log):
    # A connection that is accepted by the kernel but never answered.
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    _beat(ctx, beat_log, "fetch", "SILENT_SOCKET")
    client.recv(1)


def _ignore_term(ctx, beat_log):
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _beat(ctx, beat_log, "fetch", "IGNORES_TERM")
    while True:
        time.sleep(10**6)


def _grandchild_ignores_term(ctx, beat_log):
    pid = os.fork()
    if pid == 0:
        try:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(10**6)
        finally:
            os._exit(0)
    print(f"grandchild pid {pid}", flush=True)
    _beat(ctx, beat_log, "fetch", "WITH_GRANDCHILD")
    time.sleep(10**6)


def _raise(ctx, beat_log):
    raise RuntimeError("scanner failed on purpose")


def _exit3(ctx, beat_log):
    os._exit(3)


def _segfault(ctx, beat_log):
    ctypes.string_at(0)


def _memory(ctx, beat_log):
    hog = bytearray(int(ctx.options["memory_mb"] * 2**20))
    for i in range(0, len(hog), 4096):
        hog[i] = 1  # touch every page so it is resident
    while True:
        _beat(ctx, beat_log)
        time.sleep(ctx.options["beat_interval"])


def _flood_stdout(ctx, beat_log):
    line = "flood " + "x" * 100 + "\n"
    while True:
        _beat(ctx, beat_log)
        for _ in range(1000):
            sys.stdout.write(line)
        sys.stdout.flush()


def _garbage_heartbeat(ctx, beat_log):
    os.write(3, b"\x00\xffthis is not json\n")
    time.sleep(10**6)


def _nested_heartbeat(ctx, beat_log):
    os.write(3, b"[" * 1500 + b"]" * 1500 + b"\n")  # deep enough for a RecursionError in json.loads
    time.sleep(10**6)


def _oversized_heartbeat(ctx, beat_log):
    os.write(3, b'{"t": "beat", "phase": "' + b"x" * 5000)
    time.sleep(10**6)


def _no_cycles(ctx, beat_log):
    while True:
        _beat(ctx, beat_log)
        time.sleep(ctx.options["beat_interval"])


MISBEHAVIOURS = {
    "hang_sleep": _hang_sleep,
    "busy_loop": _busy_loop,
    "sigstop": _sigstop,
    "socket_block": _socket_block,
    "ignore_term": _ignore_term,
    "grandchild_ignores_term": _grandchild_ignores_term,
    "raise": _raise,
    "exit3": _exit3,
    "segfault": _segfault,
    "memory": _memory,
    "flood_stdout": _flood_stdout,
    "garbage_heartbeat": _garbage_heartbeat,
    "oversized_heartbeat": _oversized_heartbeat,
    "nested_heartbeat": _nested_heartbeat,
    "no_cycles": _no_cycles,
}
