"""Control socket round trip while the tree is busy.

mdwd supervises 6 children that beat every millisecond (about 6,000 heartbeat
messages a second) plus one that floods stdout; we time `status` requests over
the control socket (the round trip mdwctl makes after it has started) and,
for information, whole `mdwctl status --json` invocations (interpreter start
included). Target: round trip p50 <= 20 ms.
"""
import os
import subprocess
import sys
import time

from bench.common import describe, kill_tree, percentile, start_tree, work_dir
from supervisor.shared.control_client import ControlClient

TARGET_P50 = 0.020


def main(argv=None):
    workers = {f"busy{i}": {"kind": "faulty", "interval": 1.0, "mode": "healthy", "beat_interval": 0.001}
               for i in range(6)}
    workers["flood"] = {"kind": "faulty", "interval": 60.0, "mode": "flood_stdout", "after": 0.1}
    with work_dir("control") as directory:
        tree = start_tree(directory, workers)
        sock = os.path.join(directory, "state", "mdwd.sock")
        try:
            client = ControlClient(sock)
            deadline = time.monotonic() + 30
            while True:
                try:
                    if all(r["state"] == "RUNNING" for r in client.call("status")["workers"]):
                        break
                except Exception:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the tree did not come up")
                time.sleep(0.1)
            time.sleep(1.0)
            trips = []
            for _ in range(300):
                started = time.perf_counter()
                assert client.call("status")["ok"]
                trips.append(time.perf_counter() - started)
            cli = []
            for _ in range(15):
                started = time.perf_counter()
                subprocess.run([sys.executable, "-m", "supervisor.ctl", "--socket", sock, "status", "--json"],
                               stdout=subprocess.DEVNULL, check=True)
                cli.append(time.perf_counter() - started)
        finally:
            kill_tree(tree)
    p50 = percentile(trips, 50)
    print("busy tree: 6 children beating every 1 ms + 1 flooding stdout")
    print(f"control socket status round trip: {describe(trips, 'ms', 1000)}")
    print(f"whole `mdwctl status --json` invocation (interpreter start included): {describe(cli, 'ms', 1000)}")
    met = p50 <= TARGET_P50
    print(f"target round trip p50 <= {TARGET_P50 * 1000:.0f}ms: {p50 * 1000:.2f}ms -> {'met' if met else 'MISSED'} "
          f"(ratio {p50 / TARGET_P50:.2f} of the target)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
