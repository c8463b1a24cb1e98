"""Time from a worker's hang to the alert about it arriving at a local receiver.

mdwd (a subprocess, drill kinds on) runs one `faulty` worker that beats for
2 s and then hangs (mode hang_sleep), over and over as it is killed and
respawned, and the alerts worker (its embedded defaults: a pass a second)
delivering to a json:// receiver in this process. heartbeat_timeout is 5 s;
backoff is 1 s flat, so that the hangs come regularly; the alerts' rate
limit is raised to 60 a minute, as one alert per hang every ~8 s is above the
default 6 (a burst would go out as a digest, a minute later: a separate
matter from latency).

- latency = (the receiver has the "f killed (hang ..." alert) - (the worker's
  last beat before it hung, from its beat log): target heartbeat_timeout + 2 s;
- of which detection = (the hung pid is gone: polled every 5 ms) - (last
  beat), the supervisor's part, the baseline measured in the same run;
- and delivery = latency - detection: the journal, the alerts worker's
  pass, apprise and the HTTP round trip.
"""
import os
import threading
import time

from bench.common import describe, kill_tree, last_beats, percentile, start_tree, work_dir
from tests.alert_receiver import Receiver

HEARTBEAT_TIMEOUT = 5.0
TARGET_SLACK = 2.0
RUNS = 10


def watch_deaths(beat_log, deaths, stop):
    """Note when each pid of the beat log stops existing (reaped by mdwd)."""
    while not stop.is_set():
        for pid in last_beats(beat_log):
            if pid in deaths:
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                deaths[pid] = time.monotonic()
        time.sleep(0.005)


def main(argv=None):
    runs = int((argv or [None])[0] or RUNS)
    with work_dir("alert-latency") as directory, Receiver() as receiver:
        return measure(directory, receiver, runs)


def measure(directory, receiver, runs):
    beat_log = os.path.join(directory, "f.beats")
    workers = {"f": {"kind": "faulty", "interval": 1.0, "mode": "hang_sleep", "after": 2.0, "beat_interval": 0.05,
                     "beat_log": beat_log, "stale_cycles": 0},
               "alerts": {"kind": "alerts", "interval": 1.0}}
    sections = {"alerts": {"urls": [receiver.url], "max_messages_per_minute": 60}}
    proc = start_tree(directory, workers, sections=sections, heartbeat_timeout=HEARTBEAT_TIMEOUT,
                      backoff_initial=1.0, backoff_max=1.0)
    deaths, stop = {}, threading.Event()
    watcher = threading.Thread(target=watch_deaths, args=(beat_log, deaths, stop), daemon=True)
    watcher.start()
    deadline = time.monotonic() + runs * (HEARTBEAT_TIMEOUT + 6) + 60
    try:
        def killed_alerts():  # alone, or in a digest with the crash loop it is part of
            return [t for t, b in zip(receiver.arrivals, receiver.bodies)
                    if "f killed (hang" in b.get("message", "")]

        while len(killed_alerts()) < runs and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        kill_tree(proc)
    arrivals = killed_alerts()
    beaten = last_beats(beat_log)
    pids = list(beaten)[:len(arrivals)]
    if len(arrivals) < runs or any(pid not in deaths for pid in pids):
        print(f"only {len(arrivals)} of {runs} hangs were alerted in time; log: {directory}/mdwd.log")
        return 1
    latency = [arrival - beaten[pid] for pid, arrival in zip(pids, arrivals)]
    detection = [deaths[pid] - beaten[pid] for pid in pids]
    delivery = [total - found for total, found in zip(latency, detection)]
    target = HEARTBEAT_TIMEOUT + TARGET_SLACK
    print(f"hang -> alert at the receiver: {describe(latency)}")
    print(f"  of which the supervisor's detection and kill (baseline): {describe(detection)}")
    print(f"  of which delivery after the kill: {describe(delivery, 'ms', 1000)}")
    print(f"target: every hang alerted within heartbeat_timeout + {TARGET_SLACK:g} s = {target:g} s; "
          f"max {max(latency):.3f} s ({max(latency) / target:.2f} of the target); p50 latency / baseline "
          f"{percentile(latency, 50) / percentile(detection, 50):.3f}")
    return 0 if max(latency) <= target else 1


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
