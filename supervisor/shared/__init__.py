"""What the supervisor shares with the code it runs: leaf modules, standard library only.

Both sides import these, and these import nothing else of this project, so
that `supervisor/` never depends on `workers/` or `api/` (the worker kinds
are handed to it by the entry point, workers/service.py) and the workers
depend on the supervisor only through this package:

- protocol.py        the heartbeat messages between a child and the supervisor
- context.py         a worker's side of them (WorkerContext: beat, cycle, idle)
- registry.py        what a worker kind declares (Kind, Option, Section) and the Registry of them
- checks.py          value checks for config keys ("a number > 0")
- exits.py           how a process ended, in words
- linux.py           prctl(2) (death signal, process name) and /proc children
- control_client.py  the client of mdwd's control socket (mdwctl, the API)
"""
