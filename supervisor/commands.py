"""Control commands (the control socket's requests): one function per command.

Each takes the Supervisor and the request dict and returns (answer, follows):
the JSON-ready answer and, for `tail` with follow, the name of the worker
whose new log lines keep streaming. A CommandError becomes {"ok": false}.
"""
import os

from supervisor import events, status


class CommandError(Exception):
    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind  # "usage" or "unknown_name"


def handle(supervisor, request):
    command = COMMANDS.get(request.get("cmd"))
    if command is None:
        error = f"unknown command {request.get('cmd')!r}; known: {', '.join(sorted(COMMANDS))}"
        return {"ok": False, "kind": "usage", "error": error}, None
    try:
        return command(supervisor, request)
    except CommandError as e:
        return {"ok": False, "kind": e.kind, "error": str(e)}, None


def _workers(supervisor, request, empty_means_all):
    names = request.get("names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise CommandError("usage", "'names' must be a list of worker names")
    if not names and not empty_means_all:
        raise CommandError("usage", "name at least one worker, or all")
    if not names or "all" in names:
        return list(supervisor.workers.values())
    unknown = [n for n in names if n not in supervisor.workers]
    if unknown:
        raise CommandError("unknown_name", f"no worker named {' or '.join(map(repr, unknown))}; "
                                           f"known: {', '.join(supervisor.workers) or 'none'}")
    return [supervisor.workers[n] for n in dict.fromkeys(names)]


def cmd_status(supervisor, request):
    workers = _workers(supervisor, request, empty_means_all=True)
    now = supervisor.host.now()
    for worker in workers:
        if worker.pid:
            worker.rss_mb = supervisor.host.tree_rss_mb(worker.pid)
    info = {
        "pid": os.getpid(),
        "uptime_s": round(now - supervisor.started_at, 3),
        "status": status.summary(supervisor.workers.values(), now),
        "shutting_down": supervisor.shutting_down,
        "escalated": supervisor.escalated,
        "config": supervisor.config.path or None,
        "off": supervisor.config.off_workers,  # name -> why: workers whose kind has nothing to do
    }
    return {"ok": True, "supervisor": info, "workers": [status.row(w, now) for w in workers]}, None


def cmd_events(supervisor, request):
    """The journal's events after `after` (an event id; empty or another boot's: from the oldest kept)."""
    after = request.get("after") or ""
    limit = request.get("limit", events.MAX_ANSWER)
    if not isinstance(after, str) or len(after) > 64:
        raise CommandError("usage", "'after' must be an event id such as \"3f2a9c0b11d4:17\", or empty")
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= events.MAX_ANSWER:
        raise CommandError("usage", f"limit = {limit!r}: allowed is a whole number 1..{events.MAX_ANSWER}")
    return {"ok": True, **supervisor.journal.after(after, limit)}, None


def cmd_start(supervisor, request):
    for worker in _workers(supervisor, request, empty_means_all=False):
        supervisor.start_on_request(worker)
    return {"ok": True}, None


def cmd_stop(supervisor, request):
    for worker in _workers(supervisor, request, empty_means_all=False):
        supervisor.stop_on_request(worker)
    return {"ok": True}, None


def cmd_restart(supervisor, request):
    """Restart workers; those named in `last` only once the others run again (the API restarting itself)."""
    workers = _workers(supervisor, request, empty_means_all=False)
    last = request.get("last") or []
    if not isinstance(last, list) or not all(isinstance(n, str) for n in last):
        raise CommandError("usage", "'last' must be a list of worker names")
    supervisor.restart_on_request(workers, last=frozenset(last))
    return {"ok": True}, None


def cmd_tail(supervisor, request):
    workers = _workers(supervisor, request, empty_means_all=False)
    if len(workers) != 1:
        raise CommandError("usage", "tail takes exactly one worker name")
    lines = request.get("lines", 100)
    if not isinstance(lines, int) or isinstance(lines, bool) or not 0 <= lines <= 1000:
        raise CommandError("usage", f"lines = {lines!r}: allowed is a whole number 0..1000")
    tail = list(workers[0].log_tail)[-lines:] if lines else []
    follows = workers[0].name if request.get("follow") else None
    return {"ok": True, "name": workers[0].name, "lines": tail}, follows


def cmd_reload(supervisor, request):
    problems = supervisor.reload()
    if problems:
        return {"ok": False, "kind": "config", "error": "config rejected; the running tree is kept",
                "problems": problems}, None
    return {"ok": True}, None


def cmd_shutdown(supervisor, request):
    supervisor.begin_shutdown("a shutdown request")
    return {"ok": True}, None


def cmd_pid(supervisor, request):
    if not request.get("names"):
        return {"ok": True, "pid": os.getpid()}, None
    return {"ok": True, "pids": {w.name: w.pid for w in _workers(supervisor, request, False)}}, None


COMMANDS = {name[4:]: function for name, function in dict(globals()).items() if name.startswith("cmd_")}
