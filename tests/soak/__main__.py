"""python -m tests.soak [--minutes 3] [--seed N] [--skip|--only CLASS,...] [--keep] [--quiet] [--list-faults]"""
import argparse
import secrets
import sys

from tests.soak.faults import FAULT_CLASS, catalog, parse_skip
from tests.soak.runner import Soak


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description="Chaos soak of one real mdwd tree.")
    parser.add_argument("--minutes", type=float, default=3.0, help="how long to apply faults (default 3)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run: the seed it printed")
    parser.add_argument("--skip", default="", metavar="CLASS|NAME,...", help="faults not to apply (--list-faults)")
    parser.add_argument("--only", default="", metavar="CLASS|NAME,...", help="apply only these faults")
    parser.add_argument("--keep", action="store_true", help="keep the soak's directory (mdwd.log, state/)")
    parser.add_argument("--quiet", action="store_true", help="do not print a line per fault")
    parser.add_argument("--list-faults", action="store_true", help="print the fault classes and names, and exit")
    parser.add_argument("--tag", default=None, help=argparse.SUPPRESS)  # the tree's env tag (tests check it)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.list_faults:
        print("fault classes and their faults (--skip takes either):\n" + catalog())
        return 0
    try:
        skip = parse_skip(args.skip)
        if args.only:
            skip |= set(FAULT_CLASS) - parse_skip(args.only)
    except ValueError as e:
        print(f"soak: {e}", file=sys.stderr)
        return 2
    if args.minutes <= 0:
        print(f"soak: --minutes {args.minutes:g}: allowed is a number > 0", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(10**6)
    selection = " ".join(f"{k}={v}" for k, v in (("SKIP", args.skip), ("ONLY", args.only)) if v)
    soak = Soak(args.minutes, seed, skip, selection=selection, keep=args.keep, quiet=args.quiet, tag=args.tag)
    return soak.run()


if __name__ == "__main__":
    sys.exit(main())
