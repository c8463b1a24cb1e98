"""Detection and respawn latency over many real injected hangs.

Six children each hang in a different way (sleep, busy loop, SIGSTOP, a silent
socket, ignoring SIGTERM, a grandchild ignoring SIGTERM), are killed, respawn
and hang again, under a real supervisor loop run in this process.

- detection = (SIGTERM sent) - (the child's last beat) - heartbeat_timeout;
  target p99 <= 0.25 s.
- respawn = (first beat of the successor received) - (reap of the killed
  child), with no backoff configured; target p50 <= 0.15 s.
"""
import collections
import signal
import sys
import time

from bench.common import RecordingHost, describe, in_process_supervisor, last_beats, percentile, work_dir

HANG_MODES = ("hang_sleep", "busy_loop", "sigstop", "socket_block", "ignore_term", "grandchild_ignores_term")
HEARTBEAT_TIMEOUT = 1.0
TARGET_DETECTION_P99 = 0.25
TARGET_RESPAWN_P50 = 0.150


def main(argv=None):
    hangs_wanted = int((argv or [None])[0] or 60)
    with work_dir("detection") as directory:
        return measure(directory, hangs_wanted)


def measure(directory, hangs_wanted):
    workers = {mode: {"kind": "faulty", "interval": 60.0, "mode": mode, "after": 0.3, "beat_interval": 0.02,
                      "beat_log": f"{directory}/{mode}.beats"} for mode in HANG_MODES}
    host = RecordingHost()
    host.install_signal_handlers()
    spawned = []  # (time, worker name, pid)
    real_spawn = host.spawn

    def spawn(spec, handed_over, secret_env=()):
        pid, *fds = real_spawn(spec, handed_over, secret_env)
        spawned.append((host.now(), spec.name, pid))
        return (pid, *fds)

    host.spawn = spawn
    sup = in_process_supervisor(host, workers, heartbeat_timeout=HEARTBEAT_TIMEOUT, stop_timeout=0.3,
                                backoff_initial=0.0, backoff_max=0.0, stale_cycles=0, startup_timeout=10.0)
    first_beat = {}
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            sup.run_once()
            for worker in sup.workers.values():
                if worker.pid and worker.first_beat_at and worker.pid not in first_beat:
                    first_beat[worker.pid] = worker.first_beat_at
            hang_kills = sum(1 for _, _, s in host.signalled if s == signal.SIGTERM)
            if hang_kills >= hangs_wanted and len(first_beat) > hangs_wanted:
                break
    finally:
        sup.begin_shutdown("end of benchmark")
        while not sup.finished:
            sup.run_once()
    owner = {pid: name for _, name, pid in spawned}
    beats = {}
    for mode in HANG_MODES:
        beats.update(last_beats(f"{directory}/{mode}.beats"))
    detection, by_mode = [], collections.defaultdict(list)
    terms = [(t, pid) for t, pid, s in host.signalled if s == signal.SIGTERM]
    for t, pid in terms[:hangs_wanted]:
        if pid in beats:
            latency = t - beats[pid] - HEARTBEAT_TIMEOUT
            detection.append(latency)
            by_mode[owner[pid]].append(latency)
    respawn = []
    for reaped_at, pid in host.reaped:
        name = owner.get(pid)
        successors = [p for t, n, p in spawned if n == name and t >= reaped_at]
        if name and successors and successors[0] in first_beat:
            respawn.append(first_beat[successors[0]] - reaped_at)
    print(f"hangs injected and killed: {len(detection)} over {len(HANG_MODES)} kinds, "
          f"heartbeat_timeout {HEARTBEAT_TIMEOUT}s")
    print(f"detection latency beyond heartbeat_timeout: {describe(detection)}")
    for mode, values in sorted(by_mode.items()):
        print(f"  {mode:<24} {describe(values)}")
    print(f"respawn, reap -> successor's first beat (no backoff): {describe(respawn, 'ms', 1000)}")
    p99, p50 = percentile(detection, 99), percentile(respawn, 50)
    print(f"target detection p99 <= {TARGET_DETECTION_P99}s: {p99:.3f}s -> {'met' if p99 <= TARGET_DETECTION_P99 else 'MISSED'}"
          f" (ratio {p99 / TARGET_DETECTION_P99:.2f} of the target)")
    print(f"target respawn p50 <= {TARGET_RESPAWN_P50 * 1000:.0f}ms: {p50 * 1000:.1f}ms -> "
          f"{'met' if p50 <= TARGET_RESPAWN_P50 else 'MISSED'} (ratio {p50 / TARGET_RESPAWN_P50:.2f} of the target)")
    ok = len(detection) >= 20 and p99 <= TARGET_DETECTION_P99 and p50 <= TARGET_RESPAWN_P50
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
