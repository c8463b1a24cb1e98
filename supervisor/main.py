"""mdwd: run the supervised tree in the foreground, with the worker kinds of a Registry.

    mdwd [--config PATH]          run (embedded defaults without --config)
    mdwd --check-config PATH      validate a config file: exit 0, or 2 with one line per problem

The supervisor knows no worker kind itself: the entry point that assembles
the program (workers/service.py) calls `main(argv, registry)`.

Before anything runs: the config is validated, the state dir created and
locked (one daemon per state dir: an flock on `mdwd.lock` held for mdwd's
life), the kinds' code and `preload` modules imported, files holding
secrets checked for group/other access (a warning), and the control socket
opened. Any of these failing is a one-line error and exit 2, never a
traceback.

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 if the supervisor
loop itself failed, 2 for a bad command line, configuration or preload
module, or when another mdwd already runs with the same state dir.
"""
import argparse
import errno
import fcntl
import functools
import importlib
import logging
import os
import stat
import sys

from supervisor import config as config_module

EXIT_BAD_CONFIG = 2
LOCK_NAME = "mdwd.lock"
log = logging.getLogger("mdwd")


class StartupError(Exception):
    """mdwd cannot start: the message says why, in one line."""


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="mdwd", description="Supervise the market-data scanners in the foreground.")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: embedded defaults)")
    parser.add_argument("--check-config", metavar="PATH", help="validate PATH and exit: 0 valid, 2 invalid")
    parser.add_argument("--state-dir", metavar="DIR", help="keep the state here, whatever the config says "
                        "(`make run`: ./var); mdwctl then finds this mdwd from any directory")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def import_code(config, registry):
    """Import every enabled kind's code and the preload modules (before forking, so children share
    them copy-on-write). StartupError naming the module that cannot be imported."""
    names = [(f"preload module {m!r}", m, None) for m in config.preload]
    names += [(f"kind {k!r} ({registry.kinds[k].entry})", None, registry.kinds[k])
              for k in sorted({spec.kind for spec in config.enabled_workers.values()})]
    for what, module, kind in names:
        try:
            kind.load() if kind else importlib.import_module(module)
        except Exception as e:  # an ImportError, or whatever the module raises while it is imported
            raise StartupError(f"{what} cannot be imported: {type(e).__name__}: {e}") from None


def check_config(path, registry):
    try:
        config = config_module.load(path, registry=registry)
        import_code(config, registry)
    except config_module.ConfigError as e:
        for problem in e.problems:
            print(f"{e.source}: {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except StartupError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"{path}: ok ({len(config.enabled_workers)} workers enabled: {', '.join(config.enabled_workers)})")
    for line in registry.describe(config) if registry.describe else ():
        print(f"{path}: {line}", file=sys.stderr if line.startswith("warning:") else sys.stdout)
    return 0


def lock_state_dir(state_dir):
    """Hold an exclusive flock on state_dir/mdwd.lock for as long as this process lives (its fd is
    returned and must stay open); StartupError if another mdwd holds it."""
    path = os.path.join(state_dir, LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StartupError(f"cannot open the lock file {path}: {e.strerror or e}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise StartupError(f"another mdwd (pid {holder}) is already running with state_dir {state_dir}") from None
        raise StartupError(f"cannot lock {path}: {e.strerror or e}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def warn_about_open_secrets(config, environ=os.environ):
    """A warning for each file holding a secret that group or others can read."""
    provider = config.raw.get("provider", {})
    candidates = []
    if config.path and (config.raw.get("api") or {}).get("token"):
        candidates.append((config.path, "the config file, which sets [api] token"))
    if provider.get("kind") == "schwab":
        token_file = os.path.join(config.state_dir, provider.get("token_file", "schwab-token.json"))
        candidates.append((token_file, "the Schwab token file"))
    if environ.get("MDW_ENV_FILE"):
        candidates.append((environ["MDW_ENV_FILE"], "the environment file"))
    urls_file = (config.raw.get("alerts") or {}).get("urls_file")
    if urls_file:
        candidates.append((os.path.join(config.state_dir, urls_file), "the alert URLs file ([alerts] urls_file)"))
    for path, what in candidates:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            log.warning("%s %s is readable by %s (mode %04o); make it 0600: chmod 600 %s", what, path,
                        "group and others" if mode & stat.S_IRWXO else "its group", stat.S_IMODE(mode), path)


def remove_stale_temp_files(state_dir):
    """Temp files of writes that a kill interrupted (a token refresh, a quarantine save)."""
    for name in os.listdir(state_dir):
        if name.startswith((".schwab-token-", ".quarantine-")):
            try:
                os.unlink(os.path.join(state_dir, name))
                log.info("removed %s, left by an interrupted write", name)
            except OSError:
                pass


def main(argv=None, *, registry):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.check_config:
        return check_config(args.check_config, registry)
    # Numeric libraries must not start thread pools in the (single-threaded) supervisor.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from supervisor import commands
    from supervisor.control import ControlServer
    from supervisor.host import PosixHost
    from supervisor.logs import LineFormatter, setup_logging, under_journal
    from supervisor.loop import Supervisor
    from supervisor.notify import SystemdNotifier
    from supervisor.shared.control_client import socket_path
    from supervisor.shared.paths import default_state_dir

    journal = under_journal()
    host = PosixHost()
    setup_logging(journal, host.write_log, getattr(logging, args.log_level))
    load = functools.partial(config_module.load, registry=registry, state_dir=args.state_dir)
    try:
        config = load(args.config)
        try:
            os.makedirs(config.state_dir, exist_ok=True)
        except OSError as e:
            raise StartupError(f"cannot create state_dir {config.state_dir}: {e.strerror or e}") from None
        lock_fd = lock_state_dir(config.state_dir)  # noqa: F841 (held open: the lock lasts as long as we do)
        remove_stale_temp_files(config.state_dir)
        import_code(config, registry)
        warn_about_open_secrets(config)
        path = socket_path(config.state_dir)
        try:
            control = ControlServer(path, host, lambda request: commands.handle(supervisor, request))
        except OSError as e:
            raise StartupError(f"cannot listen on the control socket {path}: {e.strerror or e}") from None
        log.info("state in %s; control socket %s", config.state_dir, path)
        if args.state_dir:
            control.link_from(socket_path(default_state_dir(os.environ)))
    except config_module.ConfigError as e:
        for problem in e.problems:
            log.error("%s: %s", e.source, problem)
        host.flush_log()
        return EXIT_BAD_CONFIG
    except StartupError as e:
        log.error("%s", e)
        host.flush_log()
        return EXIT_BAD_CONFIG
    supervisor = Supervisor(config, host, SystemdNotifier(host.now()), LineFormatter(journal), load_config=load,
                            control=control)
    return supervisor.run()
