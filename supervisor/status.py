"""Human- and machine-readable views of the workers (STATUS=, logs, control socket)."""
import math

from supervisor.states import WAITING_STATES, WorkerState

S = WorkerState


def settled(worker, now):
    """Has this worker beaten once, or had its chance to (for READY=1)?"""
    if worker.first_beat_at is not None or worker.spawns > 1 or worker.last_exit is not None:
        return True
    return worker.started_at is not None and now - worker.started_at >= worker.spec.startup_timeout


def problem(worker, now):
    """A short phrase for an unhealthy worker: 'backoff 8s (hang: fetch TSLA)'; None if healthy."""
    if worker.is_healthy(now):
        return None
    text = worker.state.value.lower()
    if worker.state in WAITING_STATES:
        text += f" {math.ceil(max(0.0, worker.next_start_at - now))}s"
    if worker.state is S.STOPPING and worker.stop_reason:
        text += f" ({worker.stop_reason.value})"
    elif worker.last_exit is not None and worker.state is not S.RUNNING:
        exit_ = worker.last_exit
        text += f" ({exit_.reason.value}{': ' + exit_.doing if exit_.doing and exit_.reason.value in ('hang', 'stalled') else ''})"
    return text


def summary(workers, now):
    """One line: '6/6 healthy' or '5/6 healthy; whale_flows backoff 8s (hang: fetch TSLA)'."""
    workers = list(workers)
    problems = [f"{w.name} {p}" for w in workers if (p := problem(w, now))]
    line = f"{len(workers) - len(problems)}/{len(workers)} healthy"
    return "; ".join([line] + problems)


def next_step(worker, now):
    if worker.state in WAITING_STATES:
        return f"respawn in {max(0.0, worker.next_start_at - now):.1f}s [{worker.state.value}]"
    if worker.state is S.STOPPED:
        return "stopped" if not worker.wanted else "restarting now"
    return worker.state.value


def _age(now, then):
    return None if then is None else round(now - then, 3)


def row(worker, now):
    """The status of one worker as plain data (control socket, API)."""
    return {
        "name": worker.name,
        "kind": worker.spec.kind,
        "interval": worker.spec.interval,
        "wanted": worker.wanted,
        "state": worker.state.value,
        "healthy": worker.is_healthy(now),
        "pid": worker.pid,
        "uptime_s": _age(now, worker.started_at) if worker.pid else None,
        "restarts": worker.restarts,
        "restarts_by_reason": dict(worker.restarts_by_reason),
        "last_beat_age_s": _age(now, worker.last_beat_at),
        "last_cycle_ok_age_s": _age(now, worker.last_cycle_ok_at),
        "phase": worker.last_beat[0] if worker.last_beat else None,
        "item": worker.last_beat[1] if worker.last_beat else None,
        "last_cycle": worker.last_cycle,
        "last_exit": worker.last_exit.as_dict() if worker.last_exit else None,
        "rss_mb": worker.rss_mb,
        "backoff_s": round(max(0.0, worker.next_start_at - now), 3) if worker.state in WAITING_STATES else 0.0,
        "max_beat_gap_s": round(worker.max_beat_gap, 3),
        "log_lines_dropped": worker.log_lines_dropped,
        "reported": worker.reported,
        "cycles_ok": worker.cycles_ok,
        "cycles_failed": worker.cycles_failed,
        "cycle_durations": worker.cycle_durations.as_dict(),
        "provider_requests": worker.provider_requests(),
    }
