"""Human- and machine-readable views of the workers (STATUS=, logs, control socket)."""
import math

from supervisor.states import BACKOFF_STATES, STOPPING_STATES, WorkerState

S = WorkerState


def settled(worker, now):
    """Has this worker beaten once, or had its chance to (for READY=1)?"""
    if not worker.wanted or worker.first_beat_at is not None or worker.spawns > 1 or worker.last_exit is not None:
        return True
    return worker.started_at is not None and now - worker.started_at >= worker.spec.startup_timeout


def problem(worker, now):
    """A short phrase for an unhealthy worker, None if healthy:
    'backoff 8s (hang: fetch TSLA)', 'failing (last cycle failed: no quote for any of 174 symbols)'."""
    if worker.is_healthy(now):
        return None
    if worker.state is S.RUNNING:
        stale = worker.staleness(now)
        return f"failing ({stale[1] if stale else worker.failing_reason(now)})"
    text = worker.state.value.lower()
    if worker.state in BACKOFF_STATES:
        text += f" {math.ceil(max(0.0, worker.next_start_at - now))}s"
    if worker.state in STOPPING_STATES and worker.stop_reason:
        text += f" ({worker.stop_reason.value})"
    elif worker.last_exit is not None:
        text += f" ({worker.last_exit.why()})"
    return text


def summary(workers, now):
    """One line: '6/6 healthy' or '5/6 healthy; whale_flows backoff 8s (hang: fetch TSLA)'.

    Only workers meant to run count: one stopped on purpose is listed as stopped, not as a problem."""
    workers = [w for w in workers if w.state is not S.REMOVED]
    wanted = [w for w in workers if w.wanted]
    problems = [f"{w.name} {p}" for w in wanted if (p := problem(w, now))]
    line = f"{len(wanted) - len(problems)}/{len(wanted)} healthy"
    stopped = [w.name for w in workers if not w.wanted]
    if stopped:
        line += f" ({len(stopped)} stopped: {', '.join(stopped)})"
    return "; ".join([line] + problems + [f"warning: {w}" for w in warnings(wanted)])


def warnings(workers):
    """The warnings the workers report, each once (several workers share a login)."""
    return list(dict.fromkeys(w for worker in workers for w in worker.reported.get("warnings", ())))


def lines(workers, now):
    """The summary line, then one line per worker: its state, pid and health."""
    workers = list(workers)
    return [summary(workers, now)] + [f"{w.name} {w.state.value} pid {w.pid or '-'}, {problem(w, now) or 'healthy'}"
                                      for w in workers]


def life(worker):
    """What happened to a worker over mdwd's run, in words (the exit summary)."""
    ended = ", ".join(f"{count} {reason}" for reason, count in worker.restarts_by_reason.most_common())
    return (f"{worker.name}: {worker.spawns} process{'' if worker.spawns == 1 else 'es'} started, "
            f"{worker.restarts} restart{'' if worker.restarts == 1 else 's'}; exits: {ended or 'none'}; "
            f"longest heartbeat gap {worker.max_beat_gap:.3f}s")


def next_step(worker, now):
    if worker.state in BACKOFF_STATES:
        return f"respawn in {max(0.0, worker.next_start_at - now):.1f}s [{worker.state.value}]"
    if worker.state is S.PENDING:
        return "restarting now"
    if worker.state is S.STOPPED:
        return "stopped"
    if worker.state is S.REMOVED:
        return "removed"
    return worker.state.value


def _age(now, then):
    return None if then is None else round(now - then, 3)


def row(worker, now):
    """The status of one worker as plain data (control socket, API)."""
    last_beat = worker.last_beat
    return {
        "name": worker.name,
        "kind": worker.spec.kind,
        "interval": worker.spec.interval,
        "startup_timeout": worker.spec.startup_timeout,
        "heartbeat_timeout": worker.spec.heartbeat_timeout,
        "wanted": worker.wanted,
        "state": worker.state.value,
        "healthy": worker.is_healthy(now),
        "problem": problem(worker, now) if worker.wanted else None,
        "failing": worker.failing_reason(now) if worker.wanted else None,
        "pid": worker.pid,
        "supervised_s": _age(now, worker.created_at),
        "uptime_s": _age(now, worker.started_at) if worker.pid else None,
        "restarts": worker.restarts,
        "restarts_by_reason": dict(worker.restarts_by_reason),
        "last_beat_age_s": _age(now, worker.last_beat_at),
        "last_cycle_ok_age_s": _age(now, worker.last_cycle_ok_at),
        "phase": last_beat.phase if last_beat else None,
        "item": last_beat.item if last_beat else None,
        "last_cycle": worker.last_cycle,
        "last_exit": worker.last_exit.as_dict() if worker.last_exit else None,
        "rss_mb": worker.rss_mb,
        "backoff_s": round(max(0.0, worker.next_start_at - now), 3) if worker.state in BACKOFF_STATES else 0.0,
        "max_beat_gap_s": round(worker.max_beat_gap, 3),
        "log_lines_dropped": worker.log_lines_dropped,
        "reported": worker.reported,
        "warnings": list(worker.reported.get("warnings", ())),
        "cycles_ok": worker.cycles_ok,
        "cycles_failed": worker.cycles_failed,
        "cycle_durations": worker.cycle_durations.as_dict(),
        "provider_requests": worker.provider_requests(),
    }
