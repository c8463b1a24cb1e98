"""mdwctl: see and steer a running mdwd through its control socket.

usage: mdwctl [--socket PATH | --config PATH] COMMAND [ARGS]

commands:
  status [NAME...] [--json]   one line per worker (or JSON)
  start NAME...|all           start workers (stopped ones, or now instead of after backoff)
  stop NAME...|all            stop workers; they stay stopped until started
  restart NAME...|all         restart workers now
  tail [-f] [-n N] NAME       the last N (default 20) log lines of a worker; -f follows
  pid [NAME...]               the supervisor's pid, or the workers'
  reload                      re-read the config file (like SIGHUP); bad config: exit 2, tree kept
  shutdown                    stop every worker and the supervisor
  health                      one summary line; exit 0 only if every worker that should run is healthy
  events                      the supervisor's recent events: kills, crash loops, escalation, start, stop
  alert-test                  (the installed mdwctl) a test message to every alert URL of --config;
                              exit 0 all went out, 1 one did not, 2 a bad config or no URL

exit codes (supervisorctl 4.x's where they overlap):
  0  ok
  1  mdwd failed to carry out the command (its log says why)
  2  usage error (bad command or argument), or a config the daemon rejected
  3  a worker that should run is not running (one stopped on purpose is not a failure)
  4  the daemon cannot be reached, or a worker name is unknown
"""
import argparse
import json
import os
import sys

from supervisor.shared.control_client import ControlClient, ControlError, socket_path

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING, EXIT_UNREACHABLE = 0, 1, 2, 3, 4


class CtlError(Exception):
    def __init__(self, message, code):
        super().__init__(message)
        self.code = code


def _call(client, cmd, **args):
    return _checked(client.call(cmd, **args))


def _checked(answer):
    """The daemon's answer, or CtlError with the exit code its refusal maps to."""
    if not answer.get("ok"):
        code = {"unknown_name": EXIT_UNREACHABLE, "usage": EXIT_USAGE, "config": EXIT_USAGE,
                "internal": EXIT_FAILED}.get(
            answer.get("kind"), EXIT_UNREACHABLE)
        problems = "".join(f"\n  {p}" for p in answer.get("problems", []))
        raise CtlError(f"mdwctl: {answer.get('error', 'the daemon refused the request')}{problems}", code)
    return answer


def _clock(seconds):
    seconds = int(seconds or 0)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _cut(text, limit=60):
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(row):
    """supervisorctl-like detail for one worker row."""
    state = row["state"]
    parts = []
    if row["pid"]:
        parts.append(f"pid {row['pid']}, uptime {_clock(row['uptime_s'])}")
        if row["last_beat_age_s"] is not None:
            parts.append(f"beat {row['last_beat_age_s']:.1f}s ago")
    if state in ("BACKOFF", "FLAPPING"):
        parts.append(f"respawn in {row['backoff_s']:.1f}s")
    if state == "STOPPED":
        parts.append("stopped on request")
    text = ", ".join(parts + [f"restarts {row['restarts']}"])
    exit_ = row.get("last_exit")
    if exit_ and row["restarts"]:
        why = exit_["reason"] + (f": {exit_['doing']}" if exit_.get("doing") and exit_["reason"] in ("hang", "stalled") else "")
        text += f" (last: {_cut(why)})"
    if state == "RUNNING" and row.get("failing"):
        text += f"; FAILING: {_cut(row['failing'], 120)}"
    reported = row.get("reported") or {}
    for warning in row.get("warnings") or ():
        text += f"; WARNING: {warning}"
    quarantined = reported.get("quarantined") or []
    if quarantined:
        total = reported.get("quarantined_total", len(quarantined))
        more = f" (+{total - len(quarantined)} more)" if total > len(quarantined) else ""
        text += f"; quarantined: {', '.join(_cut(q.get('item'), 30) for q in quarantined)}{more}"
    return text


def not_running(rows):
    return [r["name"] for r in rows if r["wanted"] and r["state"] != "RUNNING"]


def cmd_status(client, args):
    answer = _call(client, "status", names=args.names)
    rows = answer["workers"]
    off = {} if args.names else answer["supervisor"].get("off") or {}
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        width = max((len(name) for name in [r["name"] for r in rows] + list(off)), default=4)
        for r in rows:
            print(f"{r['name']:<{width}}  {r['state']:<8}  {describe(r)}")
        for name, why in off.items():
            print(f"{name:<{width}}  {'OFF':<8}  {why}")
    return EXIT_NOT_RUNNING if not_running(rows) else EXIT_OK


def _steer(cmd):
    def run(client, args):
        _call(client, cmd, names=args.names)
        print(f"{cmd}: {', '.join(args.names)}: requested")
        return EXIT_OK
    run.__doc__ = f"{cmd} the named workers"
    return run


def cmd_tail(client, args):
    if not 0 <= args.lines <= 1000:
        raise CtlError(f"mdwctl: -n {args.lines}: allowed is 0..1000", EXIT_USAGE)
    answers = client.stream("tail", names=[args.name], lines=args.lines, follow=args.follow)
    first = next(answers, None)
    if first is None:
        raise CtlError(f"mdwctl: mdwd at {client.path} closed the connection without answering", EXIT_UNREACHABLE)
    for line in _checked(first)["lines"]:
        print(line)
    if args.follow:
        client.timeout = None
        try:
            for answer in answers:
                print(answer["line"], flush=True)
        except KeyboardInterrupt:
            pass
    return EXIT_OK


def cmd_pid(client, args):
    answer = _call(client, "pid", names=args.names)
    if "pid" in answer:
        print(answer["pid"])
    else:
        for name, pid in answer["pids"].items():
            print(f"{name} {pid if pid else '-'}")
    return EXIT_OK


def cmd_reload(client, args):
    _call(client, "reload")
    print("reload: config applied")
    return EXIT_OK


def cmd_shutdown(client, args):
    _call(client, "shutdown")
    print("shutdown: requested")
    return EXIT_OK


def cmd_events(client, args):
    """The supervisor's journal: kills, crash loops, escalation, start and stop (what alerts tell)."""
    answer = _call(client, "events")
    if answer.get("missed"):
        print(f"({answer['missed']} older events were dropped)")
    while True:
        for event in answer["events"]:
            print(f"{event['at']} UTC  {event['kind']:<9}  {event['text']}")
        if not answer.get("more") or not answer["events"]:
            return EXIT_OK
        answer = _call(client, "events", after=answer["events"][-1]["id"])


def cmd_health(client, args):
    answer = _call(client, "status")
    print(answer["supervisor"]["status"])
    return EXIT_NOT_RUNNING if [r for r in answer["workers"] if r["wanted"] and not r["healthy"]] else EXIT_OK


COMMANDS = {"status": cmd_status, "start": _steer("start"), "stop": _steer("stop"), "restart": _steer("restart"),
            "tail": cmd_tail, "pid": cmd_pid, "reload": cmd_reload, "shutdown": cmd_shutdown, "health": cmd_health,
            "events": cmd_events}


def parser(extra=None):
    """The command line; `extra` maps more subcommand names to Command objects (e.g. alert-test)."""
    p = argparse.ArgumentParser(prog="mdwctl", description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH", help="the control socket (default: from the config's state_dir)")
    where.add_argument("--config", metavar="PATH", help="the daemon's config file, to find its socket")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    status = sub.add_parser("status", help="one line per worker")
    status.add_argument("names", nargs="*")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    for name in ("start", "stop", "restart"):
        sub.add_parser(name, help=f"{name} workers").add_argument("names", nargs="+", metavar="NAME|all")
    tail = sub.add_parser("tail", help="a worker's last log lines")
    tail.add_argument("-f", "--follow", action="store_true")
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("name")
    sub.add_parser("pid", help="the supervisor's pid, or the workers'").add_argument("names", nargs="*")
    sub.add_parser("reload", help="re-read the config file")
    sub.add_parser("shutdown", help="stop every worker and the supervisor")
    sub.add_parser("health", help="summary line; exit 3 unless every worker that should run is healthy")
    sub.add_parser("events", help="the supervisor's recent events (kills, crash loops, start, stop)")
    for name, command in (extra or {}).items():
        command.add_arguments(sub.add_parser(name, help=command.help))
    return p


SERVICE_SOCKET = "/run/market-data-worker/mdwd.sock"  # the systemd unit's RuntimeDirectory


def find_socket(args, environ=os.environ):
    """--socket; else the socket in the state dir (the config's state_dir, relative to the config
    file's folder, or the default one: supervisor/shared/paths.py); else, if there is none there,
    the systemd service's. A config that cannot be read is reported and the other rules still apply.

    Only [supervisor] state_dir is read from the config: mdwctl needs no worker kinds to find mdwd."""
    if args.socket:
        return args.socket
    from supervisor import config as config_module

    tables = {}
    if args.config:
        try:
            tables = config_module.read_file(args.config)
        except config_module.ConfigError as e:
            print(f"mdwctl: cannot use the config to find the socket ({e}); trying the default places",
                  file=sys.stderr)
            tables = {}
    path = socket_path(config_module.state_dir_of(tables, environ, args.config or ""), environ)
    if not os.path.exists(path) and os.path.exists(SERVICE_SOCKET):
        return SERVICE_SOCKET
    return path


class Command:
    """A subcommand that does not talk to mdwd (the program assembling mdwctl adds them: alert-test).
    `run(args)` returns the exit code."""

    def __init__(self, help, run, add_arguments=lambda parser: None):
        self.help, self.run, self.add_arguments = help, run, add_arguments


def main(argv=None, extra=None):
    args = parser(extra).parse_args(sys.argv[1:] if argv is None else argv)  # exits 2 on usage errors
    if extra and args.command in extra:
        return extra[args.command].run(args)
    try:
        client = ControlClient(find_socket(args))
        return COMMANDS[args.command](client, args)
    except CtlError as e:
        print(e, file=sys.stderr)
        return e.code
    except ControlError as e:
        print(f"mdwctl: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
