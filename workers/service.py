"""mdwd, assembled: the supervisor (supervisor/) running this project's worker kinds (workers/kinds.py).

This is the program's entry point (the `mdwd` command, or `python -m
workers.service`): the one place where the supervisor is told which kinds
exist. With MDW_DRILLS=1 in the environment the drill kinds (`faulty`,
`demo`) are registered too, for the tests, the benchmarks and fire drills.
"""
import os
import sys

from supervisor import main as supervisor_main
from workers import kinds

DRILLS_VARIABLE = "MDW_DRILLS"


def registry(environ=os.environ):
    return kinds.with_drills() if environ.get(DRILLS_VARIABLE) == "1" else kinds.REGISTRY


def main(argv=None):
    return supervisor_main.main(argv, registry=registry())


if __name__ == "__main__":
    sys.exit(main())
