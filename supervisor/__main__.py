"""mdwd: run the supervised tree in the foreground.

    mdwd [--config PATH]          run (embedded defaults without --config)
    mdwd --check-config PATH      validate a config file: exit 0, or 2 with one line per problem

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 if the supervisor
loop itself failed, 2 for a bad command line or configuration.
"""
import argparse
import logging
import os
import sys

from supervisor import config as config_module

EXIT_BAD_CONFIG = 2


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="mdwd", description="Supervise the market-data scanners in the foreground.")
    parser.add_argument("--config", metavar="PATH", help="TOML config file (default: embedded defaults)")
    parser.add_argument("--check-config", metavar="PATH", help="validate PATH and exit: 0 valid, 2 invalid")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def check_config(path):
    try:
        config = config_module.load(path)
    except config_module.ConfigError as e:
        for problem in e.problems:
            print(f"{e.source}: {problem}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    print(f"{path}: ok ({len(config.enabled_workers)} workers enabled: {', '.join(config.enabled_workers)})")
    return 0


def preload(config):
    """Import every worker's code before forking, so children share it copy-on-write."""
    import importlib

    from workers.kinds import KINDS

    for module in config.preload:
        importlib.import_module(module)
    for kind in sorted({spec.kind for spec in config.enabled_workers.values()}):
        KINDS[kind].load()


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.check_config:
        return check_config(args.check_config)
    # Numeric libraries must not start thread pools in the (single-threaded) supervisor.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from supervisor import commands
    from supervisor.control import ControlServer
    from supervisor.control_client import socket_path
    from supervisor.host import PosixHost
    from supervisor.logs import LineFormatter, setup_logging, under_journal
    from supervisor.loop import Supervisor
    from supervisor.notify import SystemdNotifier

    journal = under_journal()
    host = PosixHost()
    setup_logging(journal, host.write_log, getattr(logging, args.log_level))
    try:
        config = config_module.load(args.config)
    except config_module.ConfigError as e:
        for problem in e.problems:
            logging.getLogger("mdwd").error("%s: %s", e.source, problem)
        return EXIT_BAD_CONFIG
    try:
        os.makedirs(config.state_dir, exist_ok=True)
    except OSError as e:
        logging.getLogger("mdwd").error("cannot create state_dir %s: %s", config.state_dir, e.strerror or e)
        return EXIT_BAD_CONFIG
    try:
        preload(config)
    except ImportError as e:
        logging.getLogger("mdwd").error("preload: cannot import %s: %s", e.name, e)
        return EXIT_BAD_CONFIG
    path = socket_path(config.state_dir)
    try:
        control = ControlServer(path, host, lambda request: commands.handle(supervisor, request))
    except OSError as e:
        logging.getLogger("mdwd").error("cannot listen on the control socket %s: %s", path, e)
        return EXIT_BAD_CONFIG
    supervisor = Supervisor(config, host, SystemdNotifier(host.now()), LineFormatter(journal), control=control)
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
