"""The worker kinds a config can name, with the options each accepts.

`[workers.NAME] kind = "..."` selects an entry here. Each kind's options are
its own keys in that table; the config loader validates them against the
`Option`s below, so a typo is an error naming the key, never silently ignored.
The entry point ("module:function") is imported by the supervisor before it
forks, so children share the imported code and data with it (copy-on-write).
This module must stay cheap to import: it is read by `mdwd --check-config`.
"""
import dataclasses
import importlib
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True)
class Option:
    type: Any  # a type or tuple of types accepted from TOML
    default: Any
    help: str
    check: Optional[Callable[[Any], Optional[str]]] = None  # returns what is allowed, or None if fine


@dataclasses.dataclass(frozen=True)
class Kind:
    entry: str  # "package.module:function", called with a WorkerContext
    help: str
    options: dict = dataclasses.field(default_factory=dict)
    sections: tuple = ()  # shared config tables it reads, e.g. ("api",)

    def load(self):
        module_name, _, function = self.entry.partition(":")
        return getattr(importlib.import_module(module_name), function)


def _positive(value):
    return None if value > 0 else "a number > 0"


def _non_negative(value):
    return None if value >= 0 else "a number >= 0"


def _one_of(*choices):
    def check(value):
        return None if value in choices else "one of " + ", ".join(choices)

    return check


NUMBER = (int, float)

FAULT_MODES = (
    "healthy", "hang_sleep", "busy_loop", "sigstop", "socket_block", "ignore_term",
    "grandchild_ignores_term", "raise", "exit3", "segfault", "memory", "flood_stdout",
    "garbage_heartbeat", "oversized_heartbeat", "crash_at_start", "no_cycles",
)

KINDS = {
    "demo": Kind(
        entry="workers.demo:run",
        help="demonstration worker: walks a list of items each interval, beating per item",
        options={
            "items": Option(list, ["alpha", "beta", "gamma"], "items processed each cycle"),
            "item_seconds": Option(NUMBER, 0.05, "seconds of simulated work per item", _non_negative),
        },
    ),
    "api": Kind(
        entry="api.worker:run",
        help="the HTTP status API (Bottle on a production WSGI server); beats after answering itself",
        sections=("api",),
    ),
    "faulty": Kind(
        entry="workers.faulty:run",
        help="misbehaves on request (tests and benchmarks of the supervisor)",
        options={
            "mode": Option(str, "healthy", "how to misbehave", _one_of(*FAULT_MODES)),
            "after": Option(NUMBER, 0.0, "seconds of healthy beating before misbehaving", _non_negative),
            "beat_interval": Option(NUMBER, 0.1, "seconds between beats while healthy", _positive),
            "memory_mb": Option(NUMBER, 200, "megabytes to allocate in mode memory", _positive),
            "beat_log": Option(str, "", "file to append 'pid monotonic-time' to on every beat"),
            "import_modules": Option(list, [], "modules to import before working (memory benchmark)"),
        },
    ),
}
