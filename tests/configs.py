"""Build test configurations that run only the workers a test names, with the drill kinds registered."""
import functools
import os
import sys
import tomllib

from supervisor import config as config_module
from workers import kinds

REGISTRY = kinds.with_drills()
load = functools.partial(config_module.load, registry=REGISTRY)
from_tables = functools.partial(config_module.from_tables, registry=REGISTRY)
defaults = functools.partial(config_module.defaults, REGISTRY)
# How tests and benchmarks start mdwd: the service's entry point, drill kinds switched on.
MDWD = (sys.executable, "-m", "workers.service")
DRILLS_ENV = {"MDW_DRILLS": "1"}


def mdwd_environ(**extra):
    return {**os.environ, **DRILLS_ENV, **extra}

FAST = {
    "heartbeat_timeout": 1.0,
    "startup_timeout": 5.0,
    "stop_timeout": 1.0,
    "backoff_initial": 0.2,
    "backoff_max": 1.0,
    "stable_after": 60.0,
}


def tables(workers, fast=True, **supervisor):
    """Config tables: the given workers, every embedded default worker disabled.

    With `fast` the supervisor's timeouts are the short FAST ones tests use; without, the defaults."""
    all_workers = {name: {"enabled": False} for name in defaults()["workers"]}
    all_workers.update(workers)
    return {"supervisor": {**(FAST if fast else {}), **supervisor}, "workers": all_workers}


def build(workers, **supervisor):
    return from_tables(tables(workers, **supervisor), path="")


def to_toml(data, prefix=""):
    """A tiny TOML writer for the nested tables above (strings, numbers, bools, lists)."""
    lines, subtables = [], []
    for key, value in data.items():
        if isinstance(value, dict):
            subtables.append((key, value))
        else:
            lines.append(f"{key} = {_value(value)}")
    out = ""
    if lines:
        out += (f"[{prefix}]\n" if prefix else "") + "\n".join(lines) + "\n\n"
    for key, value in subtables:
        out += to_toml(value, f"{prefix}.{key}" if prefix else key)
    assert tomllib.loads(out) is not None
    return out


def _value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return repr(value)
