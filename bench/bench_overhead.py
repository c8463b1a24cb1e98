"""Supervisor CPU while 6 healthy children beat every second, against supervisord.

Both run at the same time for the same wall-clock window: mdwd supervising 6
faulty(healthy) children that beat (and report a cycle) every second, and
supervisord 4.x (installed from PyPI into its own virtualenv under bench/.work,
since its package name clashes with ours) managing 6 sleeping processes.
Target: mdwd <= 0.5 % of one core.
"""
import os
import subprocess
import sys
import time

import psutil

from bench.common import kill_tree, start_tree, work_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUPERVISORD_VENV = os.path.join(ROOT, "bench", ".work", "supervisord-venv")
TARGET_PERCENT = 0.5


def supervisord_python():
    python = os.path.join(SUPERVISORD_VENV, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", SUPERVISORD_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "supervisor>=4,<5"], check=True)
    return python


def start_mdwd(directory):
    workers = {f"w{i}": {"kind": "faulty", "interval": 1.0, "mode": "healthy", "beat_interval": 1.0}
               for i in range(6)}
    return start_tree(directory, workers)


def start_supervisord(directory):
    conf = os.path.join(directory, "supervisord.conf")
    programs = "".join(f"[program:sleep{i}]\ncommand=/bin/sleep 1000000\nautorestart=true\n\n" for i in range(6))
    with open(conf, "w") as f:
        f.write(f"[supervisord]\nnodaemon=true\nlogfile={directory}/supervisord.log\npidfile={directory}/sd.pid\n"
                f"childlogdir={directory}\n\n{programs}")
    return subprocess.Popen([supervisord_python(), "-m", "supervisor.supervisord", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            cwd=directory, start_new_session=True)


def cpu_seconds(pid):
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main(argv=None):
    seconds = float((argv or [None])[0] or 60)
    with work_dir("overhead") as directory:
        procs = {"mdwd": start_mdwd(directory), "supervisord": start_supervisord(directory)}
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not all(
                    len(psutil.Process(p.pid).children()) == 6 for p in procs.values()):
                time.sleep(0.1)
            time.sleep(3)  # past start-up (imports, first spawns): measure the steady state
            before = {name: cpu_seconds(p.pid) for name, p in procs.items()}
            started = time.monotonic()
            time.sleep(seconds)
            wall = time.monotonic() - started
            used = {name: cpu_seconds(p.pid) - before[name] for name, p in procs.items()}
        finally:
            for proc in procs.values():
                kill_tree(proc)
    percent = {name: 100 * cpu / wall for name, cpu in used.items()}
    print(f"window {wall:.1f}s, 6 children each")
    print(f"mdwd (6 children beating every 1s):   {used['mdwd']:.3f}s CPU = {percent['mdwd']:.3f}% of one core")
    print(f"supervisord 4.x (6 sleeping children): {used['supervisord']:.3f}s CPU = {percent['supervisord']:.3f}% of one core")
    ratio = percent["mdwd"] / percent["supervisord"] if percent["supervisord"] else float("inf")
    print(f"ratio mdwd / supervisord: {ratio:.2f}")
    met = percent["mdwd"] <= TARGET_PERCENT
    print(f"target mdwd <= {TARGET_PERCENT}% of one core: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
