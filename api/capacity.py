"""How many connections the API's processes hold, and for how long an idle one is kept.

The failure this guards: ~1,100 idle TCP connections from one local user
(connect and send nothing, or half a request) stopped the API answering
anyone, and it did not recover while they were held. granian accepts a
connection only with a free slot of its `backpressure` (by default its
backlog / processes = 512 per serving process), and an idle connection kept
its slot for granian's 30 s header read timeout; further connections, the
good clients' among them, waited in the kernel's backlog and then in SYN
retries. The soft RLIMIT_NOFILE (1,024 under systemd) capped what a higher
backpressure could hold, and a process out of descriptors fails every accept.

So, in the API worker before it forks the server (its processes inherit it):
- `raise_open_files_limit()` raises the soft RLIMIT_NOFILE to the hard limit
  (524,288 under systemd; any user may do that);
- `connections_per_process(limit)` is the backpressure: up to
  MAX_CONNECTIONS_PER_PROCESS connections per serving process (an idle
  connection costs ~11 KB there), fewer if the descriptors do not allow, with
  FD_RESERVE descriptors (or half, for a tiny limit) left for the interpreter,
  SQLite and the control socket;
- HEADER_TIMEOUT_S: a connection that has not sent a whole request head this
  long after it was accepted, or after its previous answer (keep-alive), is
  closed, so held slots come back.
"""
from __future__ import annotations

import resource

__all__ = ["raise_open_files_limit", "connections_per_process", "HEADER_TIMEOUT_S",
           "MAX_CONNECTIONS_PER_PROCESS", "FD_RESERVE"]

HEADER_TIMEOUT_S = 10.0
MAX_CONNECTIONS_PER_PROCESS = 10_000
FD_RESERVE = 128
UNLIMITED_FALLBACK = 1 << 20  # the kernel's default fs.nr_open, for a hard limit of "unlimited"


def raise_open_files_limit(rlimit=resource) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (never lower it); the soft limit now in force."""
    soft, hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    wanted = UNLIMITED_FALLBACK if hard == rlimit.RLIM_INFINITY else hard
    if soft != rlimit.RLIM_INFINITY and soft < wanted:
        try:
            rlimit.setrlimit(rlimit.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):  # e.g. "unlimited" above fs.nr_open: keep what we have
            pass
    return UNLIMITED_FALLBACK if soft == rlimit.RLIM_INFINITY else int(soft)


def connections_per_process(open_files: int) -> int:
    """The connections one serving process may hold open with `open_files` descriptors."""
    return min(MAX_CONNECTIONS_PER_PROCESS, max(open_files // 2, open_files - FD_RESERVE))
