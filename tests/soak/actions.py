"""The faults themselves: each `action(chaos, name, ...)` applies one and returns what it did.

An action returns None when it found nothing to apply to (every candidate
worker between processes, say); the driver then counts nothing. What each
records in the ledger, and why, is in ledger.py's docstring. An action that
sees the service break a promise reports a violation through `soak.report`.
"""
import http.client
import signal
import sqlite3

import psutil

from tests.soak.settings import HANG_LENGTH, SCANNERS, broken_config
from tests.soak.tree import poll


def _pick_worker(chaos, candidates):
    """(name, psutil.Process) of a random candidate that has a live process of our tree, or (None, None)."""
    rows = chaos.soak.tree.rows(chaos.soak.tree.status())
    live = [(w, chaos.soak.tree.ours(rows[w]["pid"])) for w in candidates if w in rows and rows[w].get("pid")]
    live = [(w, p) for w, p in live if p is not None]
    return chaos.pick.choice(live) if live else (None, None)


def _send(chaos, worker, process, signum, what):
    """Send `signum`, record it against `worker`; a SIGSTOP gets its SIGCONT scheduled."""
    soak = chaos.soak
    at = soak.clock()
    try:
        process.send_signal(signum)
    except psutil.NoSuchProcess:  # it ended (or its pid was reused) since we looked
        return None
    if signum != signal.SIGSTOP:
        soak.ledger.instant([worker], signal.Signals(signum).name, what, at)
        return f"{signal.Signals(signum).name} {what}"
    spans = soak.ledger.begin([worker], "SIGSTOP", what, at)
    delay = chaos.pick.uniform(0.5, 8.0)

    def cont():
        soak.ledger.end(spans, soak.clock())
        if process.is_running():
            process.send_signal(signal.SIGCONT)
            return f"SIGCONT {what}"
        return f"{what} already gone (the supervisor killed it)"

    chaos.schedule(delay, f"SIGSTOP {what}", cont)
    return f"SIGSTOP {what}, SIGCONT in {delay:.1f}s"


def signal_worker(chaos, name, signum):
    worker, process = _pick_worker(chaos, chaos.targets())
    if worker is None:
        return None
    return _send(chaos, worker, process, signum, f"{worker} pid {process.pid}")


def signal_serving(chaos, name, signum):
    rows = chaos.soak.tree.rows(chaos.soak.tree.status())
    serving = chaos.soak.tree.serving_processes((rows.get("api") or {}).get("pid"))
    if not serving:
        return None
    process = chaos.pick.choice(serving)
    return _send(chaos, "api", process, signum, f"api serving process pid {process.pid}")


def _ctl(chaos, *args):
    """Run mdwctl; a failure while mdwd runs is a violation. True if it exited 0."""
    soak = chaos.soak
    code, out, err = soak.tree.ctl(*args)
    if code != 0 and soak.tree.alive():
        soak.report.violation(soak.clock(), "control", f"`mdwctl {' '.join(args)}` exited {code}: {err or out}")
    return code == 0


def ctl_restart(chaos, name):
    worker = chaos.pick.choice(chaos.targets())
    at = chaos.soak.clock()
    _ctl(chaos, "restart", worker)
    chaos.soak.ledger.instant([worker], "mdwctl restart", worker, at)
    return f"mdwctl restart {worker}"


def ctl_stop(chaos, name):
    candidates = [w for w in chaos.targets() if w not in chaos.stopped]
    if not candidates:
        return None
    worker = chaos.pick.choice(candidates)
    soak = chaos.soak
    spans = soak.ledger.begin([worker], "mdwctl stop", worker, soak.clock())
    _ctl(chaos, "stop", worker)
    delay = chaos.pick.uniform(2.0, 8.0)

    def start():
        chaos.stopped.pop(worker, None)
        _ctl(chaos, "start", worker)
        soak.ledger.end(spans, soak.clock())
        return f"mdwctl start {worker}"

    chaos.stopped[worker] = chaos.schedule(delay, f"mdwctl stop {worker}", start)
    return f"mdwctl stop {worker}, start in {delay:.1f}s"


def ctl_start(chaos, name):
    """`mdwctl start` of a random worker: a no-op if it runs; the early end of our own stop if we stopped it."""
    worker = chaos.pick.choice(sorted(set(chaos.targets()) | set(chaos.stopped)))
    if worker in chaos.stopped:
        chaos.run_now(chaos.stopped[worker])
        return f"mdwctl start {worker} (stopped by the soak)"
    _ctl(chaos, "start", worker)
    return f"mdwctl start {worker} (running or in backoff: nothing to hit)"


def api_restart(chaos, name):
    soak = chaos.soak
    worker = chaos.pick.choice(chaos.targets())
    conn = http.client.HTTPConnection("127.0.0.1", soak.port, timeout=5.0)
    at = soak.clock()
    try:
        conn.request("POST", f"/api/workers/{worker}/restart", headers={"Authorization": f"Bearer {soak.token}"})
        response = conn.getresponse()
        status, body = response.status, response.read(4096)
    except (OSError, http.client.HTTPException) as e:
        return f"POST /api/workers/{worker}/restart: API unreachable ({type(e).__name__}); nothing restarted"
    finally:
        conn.close()
    if status != 202:
        soak.report.violation(at, "http-5xx" if status >= 500 else "api-restart",
                              f"POST /api/workers/{worker}/restart with the token answered {status}: {body[:200]!r}")
        return f"POST /api/workers/{worker}/restart: {status}"
    soak.ledger.instant([worker], "POST restart", worker, at)
    return f"POST /api/workers/{worker}/restart: 202"


def _reload(chaos, via):
    """Ask mdwd to re-read its config; returns mdwctl's (code, output) or None for SIGHUP."""
    soak = chaos.soak
    if via == "mdwctl":
        code, out, err = soak.tree.ctl("reload")
        return code, (err or out).strip()
    soak.tree.signal(signal.SIGHUP)
    for _ in range(2):  # each answer is one pass of mdwd's loop later; the SIGHUP is handled by the second
        soak.tree.status()
    return None


def good_reload(chaos, name):
    soak = chaos.soak
    worker = chaos.pick.choice(chaos.targets())
    state, timings = soak.state, soak.timings
    new = timings.alternates[worker] if state.intervals[worker] == timings.intervals[worker] \
        else timings.intervals[worker]
    state.intervals[worker] = new
    soak.tree.write_config(state.render())
    via = chaos.pick.choice(("SIGHUP", "mdwctl"))
    at = soak.clock()
    answer = _reload(chaos, via)
    soak.ledger.instant([worker], "reload", f"{worker} interval {new:g}", at)
    if answer is not None and answer[0] != 0 and soak.tree.alive():
        soak.report.violation(at, "reload", f"`mdwctl reload` of a good config exited {answer[0]}: {answer[1]}")
    applied = poll(lambda: soak.tree.rows(soak.tree.status()).get(worker, {}).get("interval") == new, 5.0, 0.2)
    if not applied and soak.tree.alive():
        soak.report.violation(at, "reload", f"a good reload ({via}: {worker} interval {new:g}) was not applied "
                                            f"within 5s: `mdwctl status` still shows the old interval")
    return f"{via}: {worker} interval {new:g}"


def _config_restarts(rows):
    return {w: (row.get("restarts_by_reason") or {}).get("config", 0) for w, row in rows.items()}


def _settled_rows(soak):
    """Status rows once no worker is STOPPING (a restart is counted by reason when its process is reaped)."""
    latest = {}

    def settled():
        latest.update(soak.tree.rows(soak.tree.status()))
        return latest and not any(row.get("state") == "STOPPING" for row in latest.values())
    poll(settled, soak.timings.stop_timeout + 1.0, 0.1)
    return latest


def broken_reload(chaos, variant):
    soak = chaos.soak
    tree = soak.tree
    before = _settled_rows(soak)  # an earlier reload's restart is counted before this one is judged
    data, what = broken_config(soak.state, variant, chaos.pick)
    via = chaos.pick.choice(("SIGHUP", "mdwctl"))
    log_offset = tree.log_size()
    tree.write_config(data)
    at = soak.clock()
    answer = _reload(chaos, via)
    tree.write_config(soak.state.render())  # mdwd has read the broken file by now (see _reload)
    text = f"{via} with {what}"
    if poll(lambda: not tree.alive(), 1.0, 0.05):
        soak.mdwd_died(f"after a reload ({via}) of a config with {what}; the whole tree was killed",
                       at=at, log_offset=log_offset)
        chaos.dead = True
        return text + ": mdwd DIED"
    after = _settled_rows(soak)
    changed = {w for w, n in _config_restarts(after).items() if n != _config_restarts(before).get(w, n)}
    said = f"; `mdwctl reload` exited {answer[0]}: {answer[1][:300]}" if answer is not None else ""
    if changed or (answer is not None and answer[0] == 0):
        soak.report.violation(at, "broken-reload", f"a config with {what} ({via}) was applied instead of rejected"
                                                   f"{said}; restarted for config: {', '.join(sorted(changed)) or 'none'}")
        _recover(chaos, changed, at, what)
    elif answer is not None and answer[0] != 2:
        soak.report.violation(at, "broken-reload", f"a config with {what} was rejected, but `mdwctl reload` exited "
                                                   f"{answer[0]} (a rejected config answers 2): {answer[1][:300]}")
    return text + (f": exit {answer[0]}" if answer is not None else "")


def _recover(chaos, changed, since, what):
    """Put the good config back in force after mdwd accepted a broken one at `since`.

    The workers it restarted ran on the broken config until the good one restarted them again: that
    stretch is a fault against them."""
    soak = chaos.soak
    soak.tree.write_config(soak.state.render())
    soak.tree.ctl("reload")
    soak.ledger.begin(sorted(changed), "accepted broken reload", what, since, end=soak.clock())


def db_lock(chaos, name):
    soak = chaos.soak
    at = soak.clock()
    spans = soak.ledger.begin(SCANNERS, "db-lock", "BEGIN EXCLUSIVE", at)
    conn = sqlite3.connect(str(soak.tree.db_path), timeout=10.0, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("BEGIN EXCLUSIVE")
    except sqlite3.Error as e:
        conn.close()
        soak.ledger.end(spans, soak.clock())
        return f"BEGIN EXCLUSIVE failed: {e}"
    hold = chaos.pick.uniform(2.0, 6.0)
    chaos.db_lock = conn

    def release():
        conn.execute("ROLLBACK")
        conn.close()
        chaos.db_lock = None
        soak.ledger.end(spans, soak.clock())
        return "ROLLBACK"

    chaos.schedule(hold, "db-lock", release)
    return f"BEGIN EXCLUSIVE held for {hold:.1f}s (acquired in {soak.clock() - at:.2f}s)"


def start_hang(chaos, name):
    soak = chaos.soak
    symbol = chaos.hang_rng.choice(soak.symbols)  # its own stream: the same seed hangs the same symbol
    length = chaos.hang_rng.uniform(*HANG_LENGTH)
    soak.state.hang_symbols = [symbol]
    soak.tree.write_config(soak.state.render())
    at = soak.clock()
    chaos.hang_symbol = symbol
    soak.ledger.begin(SCANNERS, "hang", f"{symbol} (allowance)", at, end=at + soak.timings.hang_allowance)
    code, out, err = soak.tree.ctl("reload")
    if code != 0 and soak.tree.alive():
        soak.report.violation(at, "reload", f"`mdwctl reload` setting sim_hang_symbols exited {code}: {err or out}")

    def clear():
        soak.state.hang_symbols = []
        soak.tree.write_config(soak.state.render())
        cleared = soak.clock()
        chaos.hang_symbol = None
        _ctl(chaos, "reload")
        soak.ledger.instant(SCANNERS, "hang cleared", symbol, cleared)
        return f"sim_hang_symbols = [] after {cleared - at:.0f}s"

    chaos.schedule(length, f"hang {symbol}", clear)
    return (f'sim_hang_symbols = ["{symbol}"] for {length:.0f}s (scanners excused for '
            f"{soak.timings.hang_allowance:g}s, then they owe their datasets again)")

