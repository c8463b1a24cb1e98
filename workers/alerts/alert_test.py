"""`mdwctl alert-test`: send one test message to every configured alert URL, and say how each went.

It reads the config (`mdwctl --config PATH alert-test`; the embedded
defaults without one) and resolves the URLs as the alerts worker does, so it
needs the same environment: run it as the service's user with the env file
loaded (see the README). It talks to no mdwd: it works whether the service
runs or not. One line per destination (scheme and host only, never the
URL): OK, or FAILED and why.

Exit codes: 0 every message went out; 1 at least one did not; 2 the config
is invalid or names no alert URL.
"""
import datetime
import os
import socket
import sys

from workers.alerts import settings as settings_module

HELP = "send a test message to every configured alert URL; exit 0 only if all went out"
EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class BadConfig(Exception):
    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


def run(config_path, load, environ=None, stdout=None, stderr=None, sender=None):
    """`load(path)` -> ([alerts] table, state_dir), or BadConfig."""
    environ = os.environ if environ is None else environ
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        section, state_dir = load(config_path)
    except BadConfig as e:
        for problem in e.problems:
            print(f"mdwctl: {problem}", file=stderr)
        return EXIT_CONFIG
    targets = settings_module.targets(section, state_dir, environ)
    if not targets:
        where = config_path or "the embedded defaults (give --config PATH)"
        print(f"mdwctl: no alert URL is configured in {where}: set [alerts] urls or urls_file", file=stderr)
        return EXIT_CONFIG
    from workers.alerts.deliver import AppriseSender, SendFailed
    from workers.alerts.service import make_destinations

    settings = settings_module.Settings.from_sections(section)
    sender = sender or AppriseSender(settings.timeout)
    destinations = make_destinations(targets, sender, settings)
    width = max(len(d.label) for d in destinations)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    failed = 0
    for d in destinations:
        if d.problem:
            failed += 1
            print(f"{d.label:<{width}}  FAILED: {d.problem}", file=stdout, flush=True)
            continue
        title = f"[mdw@{socket.gethostname()}] test message"
        body = f"mdwctl alert-test: alerts from market-data-worker reach this destination ({d.label}, {now} UTC)"
        try:
            sender.send(d, title, body)
        except SendFailed as e:
            failed += 1
            print(f"{d.label:<{width}}  FAILED: {e}", file=stdout, flush=True)
        else:
            print(f"{d.label:<{width}}  OK", file=stdout, flush=True)
    return EXIT_FAILED if failed else EXIT_OK
