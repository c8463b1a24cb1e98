"""What a forked child does before its worker runs, and how it ends.

`run_child` is called in the child right after fork() and never returns: it
ends in os._exit whatever happens, so no supervisor code runs in the child.
"""
import logging
import os
import random
import signal
import sys
import traceback

import setproctitle

from supervisor.shared.registry import hidden_secrets, load_entry
from supervisor.shared import linux

HEARTBEAT_FD = 3
SUPERVISOR_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")
EXIT_PARENT_GONE = 75
EXIT_UNCAUGHT = 1  # as the interpreter itself exits on an uncaught exception


def run_child(spec, handed_over, heartbeat_w, log_w, parent_pid, handled_signals, secret_env=()):
    code = EXIT_UNCAUGHT
    try:
        _isolate(spec.name, heartbeat_w, log_w, parent_pid, handled_signals)
        for name in hidden_secrets(os.environ, secret_env, spec.secrets):
            del os.environ[name]  # each kind sees only the secrets it needs
        code = _work(spec, handed_over)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _isolate(name, heartbeat_w, log_w, parent_pid, handled_signals):
    os.setpgid(0, 0)  # own process group: the supervisor signals the whole group
    linux.set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(EXIT_PARENT_GONE)
    signal.set_wakeup_fd(-1)
    for signum in handled_signals:
        signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())  # the parent blocked signals around fork
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_w, 1)
    os.dup2(log_w, 2)
    os.dup2(heartbeat_w, HEARTBEAT_FD)
    os.closerange(HEARTBEAT_FD + 1, os.sysconf("SC_OPEN_MAX"))
    os.set_blocking(HEARTBEAT_FD, False)
    for key in SUPERVISOR_ENV:
        os.environ.pop(key, None)
    # What ps shows as the command line. SPT_NOENV: within the original command line's length, so
    # /proc/PID/environ is left intact (else setproctitle overwrites it); it sets comm too, so after it:
    os.environ["SPT_NOENV"] = "1"
    setproctitle.setproctitle(f"mdw: {name}")
    linux.set_process_name(f"mdw:{name}")  # comm: what ps -o comm, pgrep and psutil's name() show
    sys.stdout.reconfigure(line_buffering=True)
    sys.stderr.reconfigure(line_buffering=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    random.seed()  # children must not share the parent's random sequence


def _work(spec, handed_over):
    from supervisor.shared.context import WorkerContext

    context = WorkerContext(spec, HEARTBEAT_FD, handed_over)
    load_entry(spec.entry)(context)
    return 0
