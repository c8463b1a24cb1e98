"""Reload (SIGHUP, `mdwctl reload`): the config file read again and applied to the running tree.

A file that cannot be used costs the reload only: it is logged, its problems are answered, and the
tree stays as it was. Workers removed from the file are stopped (RETIRING), new ones added, changed
ones restarted when the change needs a new process; the loop's state machine does the rest.
"""
import logging

from supervisor import config as config_module
from supervisor.states import StopReason, WorkerState
from supervisor.worker import Worker

log = logging.getLogger("mdwd")
S = WorkerState


def reload_config(supervisor):
    """Apply the config file again; a file that cannot be used is logged and the tree kept as it is."""
    try:
        new = supervisor.load_config(supervisor.config.path or None)
    except config_module.ConfigError as e:
        problems = [f"{e.source}: {problem}" for problem in e.problems]
    except Exception as e:  # whatever the file holds, it costs the reload only
        log.error("reload: reading the config failed", exc_info=True)
        problems = [f"{supervisor.config.path or 'config'}: cannot be read: {type(e).__name__}: {e}"]
    else:
        apply_config(supervisor, new)
        return []
    for problem in problems:
        log.error("reload: %s", problem)
    log.error("reload: config rejected; the running tree is kept unchanged")
    return problems


def apply_config(supervisor, new):
    """Make the tree the new config's: stop the removed workers, add the new ones, restart the changed
    ones whose change needs a new process."""
    if new.preload != supervisor.config.preload:
        log.warning("reload: a changed [supervisor] preload takes effect when mdwd restarts")
    now = supervisor.host.now()
    specs = new.enabled_workers
    supervisor.config = new
    for name, worker in list(supervisor.workers.items()):
        if name not in specs and worker.state not in (S.RETIRING, S.REMOVED):
            log.info("reload: %s removed; stopping it", name)
            supervisor.stop_worker(worker, StopReason.CONFIG, "removed from config", S.RETIRING)
    for name, spec in specs.items():
        worker = supervisor.workers.get(name)
        if worker is None:
            supervisor.workers[name] = Worker(spec, now)
            log.info("reload: %s added", name)
        elif worker.state is S.RETIRING:
            log.info("reload: %s added back; it starts again once its process has stopped", name)
            worker.change_spec(spec, now)
            worker.start(now)
        elif spec != worker.spec:
            if worker.change_spec(spec, now):
                log.info("reload: %s changed; restarting it", name)
                supervisor.stop_worker(worker, StopReason.CONFIG, "settings changed on reload", S.RESTARTING)
            else:
                log.info("reload: %s changed; the new settings apply when it next starts", name)
    supervisor.forget_removed()
    log.info("reload: config %s applied", new.path or "(embedded defaults)")
