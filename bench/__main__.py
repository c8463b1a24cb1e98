"""Run every benchmark module (bench/bench_*.py), or the ones named on the command line."""
import importlib
import pkgutil
import sys
import time

import bench


def discover():
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    names = [a if a.startswith("bench_") else f"bench_{a}" for a in argv] or discover()
    unknown = sorted(set(names) - set(discover()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(discover())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"=== {name}", flush=True)
        started = time.monotonic()
        code = importlib.import_module(f"bench.{name}").main([])
        print(f"--- {name}: {'ok' if not code else 'TARGET MISSED'} in {time.monotonic() - started:.1f}s\n", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"targets missed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
