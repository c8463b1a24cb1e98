"""Memory of the whole tree against the old one-interpreter-per-scanner layout.

Total PSS (proportional set size: shared pages divided among their sharers)
of mdwd plus 6 children that use pandas, against 6 independent interpreters
that each import pandas, measured in the same run. mdwd imports pandas before
forking (`preload`) and freezes its heap with gc.freeze(), so the children
share those pages copy-on-write. For comparison the tree is also measured
with the import done after fork in each child. Target ratio <= 0.4.
"""
import subprocess
import sys
import time

import psutil

from bench.common import kill_tree, start_tree, work_dir

TARGET_RATIO = 0.4
CHILDREN = 6


def pss_mb(pids):
    total = 0
    for pid in pids:
        total += psutil.Process(pid).memory_full_info().pss
    return total / 2**20


def tree_pids(pid):
    return [pid] + [c.pid for c in psutil.Process(pid).children(recursive=True)]


def start_pandas_tree(directory, preload):
    workers = {f"w{i}": {"kind": "faulty", "interval": 1.0, "mode": "healthy", "beat_interval": 0.5,
                         "import_modules": ["pandas"]} for i in range(CHILDREN)}
    return start_tree(directory, workers, name=f"mdwd-{preload}", preload=["pandas"] if preload else [])


def wait_settled(pid, children, timeout=60):
    """Until `children` children exist and the tree's memory stops growing (imports done)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        pids = tree_pids(pid)
        if len(pids) >= children + 1:
            now = pss_mb(pids)
            if last is not None and abs(now - last) < 1.0:
                return now
            last = now
        time.sleep(1.0)
    raise RuntimeError("the tree did not settle")


def independent_interpreters():
    code = "import pandas, sys, time; print('ready', flush=True); time.sleep(10**6)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              start_new_session=True) for _ in range(CHILDREN)]
    for proc in procs:
        proc.stdout.readline()
    return procs


def main(argv=None):
    with work_dir("memory") as directory:
        procs = independent_interpreters()
        try:
            time.sleep(1.0)
            baseline = pss_mb([p.pid for p in procs])
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
        results = {}
        for preload in (True, False):
            tree = start_pandas_tree(directory, preload)
            try:
                results[preload] = wait_settled(tree.pid, CHILDREN)
            finally:
                kill_tree(tree)
    ratio = results[True] / baseline
    print(f"6 independent interpreters importing pandas: total PSS {baseline:.1f} MiB")
    print(f"mdwd + 6 children, pandas preloaded before fork: total PSS {results[True]:.1f} MiB "
          f"-> ratio {ratio:.3f}")
    print(f"mdwd + 6 children, pandas imported after fork:   total PSS {results[False]:.1f} MiB "
          f"-> ratio {results[False] / baseline:.3f}")
    met = ratio <= TARGET_RATIO
    print(f"target ratio <= {TARGET_RATIO}: {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
