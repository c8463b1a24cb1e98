"""mdwd and mdwctl, assembled: the supervisor (supervisor/) running this project's worker kinds (workers/kinds.py).

This is the programs' entry point (the `mdwd` command, or `python -m
workers.service`; `mdwctl`, `ctl_main`): the one place where the supervisor
is told which kinds exist, and mdwctl which commands of the workers it has
(`alert-test`, which loads the config with the kinds). With MDW_DRILLS=1 in
the environment the drill kinds (`faulty`, `demo`) are registered too, for
the tests, the benchmarks and fire drills.
"""
import os
import sys

from supervisor import config as config_module
from supervisor import ctl
from supervisor import main as supervisor_main
from workers import kinds
from workers.alerts import alert_test

DRILLS_VARIABLE = "MDW_DRILLS"


def registry(environ=os.environ):
    return kinds.with_drills() if environ.get(DRILLS_VARIABLE) == "1" else kinds.REGISTRY


def main(argv=None):
    return supervisor_main.main(argv, registry=registry())


def alert_config(path):
    """([alerts] table, state_dir) of a config file (the embedded defaults for None); BadConfig if invalid."""
    try:
        config = config_module.load(path, registry=registry())
    except config_module.ConfigError as e:
        raise alert_test.BadConfig([f"{e.source}: {problem}" for problem in e.problems]) from None
    return config.raw.get("alerts", {}), config.state_dir


def ctl_main(argv=None):
    """mdwctl, with `alert-test`."""
    run = lambda args: alert_test.run(args.config, alert_config)  # noqa: E731
    return ctl.main(argv, extra={"alert-test": ctl.Command(alert_test.HELP, run)})


if __name__ == "__main__":
    sys.exit(main())
