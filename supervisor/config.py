"""Configuration: embedded defaults, overridden key by key by one TOML file.

`load(path)` returns a validated `Config` or raises `ConfigError` carrying one
line per problem, each naming the key, the value and what is allowed. Unknown
keys and sections are errors. Durations are seconds (int or float).
"""
import copy
import dataclasses
import importlib.resources
import os
import tomllib

from supervisor.checks import NUMBER, positive, symbols, text, whole, zero_is_off
from workers.kinds import KINDS

DEFAULT_STATE_DIR = "./var"


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems, source="config"):
        self.problems = list(problems)
        self.source = source
        super().__init__(f"{source}: " + "; ".join(self.problems))


def _module_names(v):
    ok = all(isinstance(m, str) and m.replace(".", "").replace("_", "").isalnum() for m in v)
    return None if ok else "a list of importable module names, e.g. [\"pandas\"]"


# key: (accepted types, check, may a [workers.NAME] table override it?)
SUPERVISOR_KEYS = {
    "state_dir": (str, text, False),
    "heartbeat_timeout": (NUMBER, positive, True),
    "startup_timeout": (NUMBER, positive, True),
    "stop_timeout": (NUMBER, positive, True),
    "backoff_initial": (NUMBER, zero_is_off, True),
    "backoff_max": (NUMBER, zero_is_off, True),
    "stable_after": (NUMBER, zero_is_off, True),
    "max_rss_mb": (NUMBER, zero_is_off, True),
    "stale_cycles": (NUMBER, zero_is_off, True),
    "escalate_after": (int, whole(0, note=" (0 = off)"), False),
    "escalate_window": (NUMBER, positive, False),
    "log_lines_per_second": (NUMBER, positive, True),
    "preload": (list, _module_names, False),
}
PER_WORKER_KEYS = tuple(k for k, (_, _, per_worker) in SUPERVISOR_KEYS.items() if per_worker)
WORKER_KEYS = {
    "kind": (str, lambda v: None if v in KINDS else "one of " + ", ".join(sorted(KINDS)), False),
    "interval": (NUMBER, positive, False),
    "enabled": (bool, None, False),
}


# Tables shared by several workers; a worker kind names the ones it reads (Kind.sections), and a
# change to one of them on reload restarts exactly the workers that read it.
DATASETS = ("watchlist", "whale_flows", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner")


def _stale_limits(v):
    ok = all(k in DATASETS and isinstance(x, NUMBER) and not isinstance(x, bool) and x > 0 for k, x in v.items())
    return None if ok else "a table of dataset = seconds > 0, datasets: " + ", ".join(DATASETS)


def _provider_kind(v):
    return None if v in ("sim", "schwab") else "sim (the simulated market) or schwab"


def _url(v):
    return None if v.startswith(("http://", "https://")) else "an http:// or https:// URL"


SECTION_KEYS = {
    "provider": {
        "kind": (str, _provider_kind),
        "request_timeout": (NUMBER, positive),
        "requests_per_minute": (int, whole(1, 10000)),
        "sim_seed": (int, whole(0)),
        "base_url": (str, _url),
        "auth_url": (str, _url),
        "token_file": (str, text),
        "sim_hang_symbols": (list, symbols(allow_empty=True)),
        "sim_fail_symbols": (list, symbols(allow_empty=True)),
    },
    "api": {
        "host": (str, text),
        "port": (int, whole(0, 65535, note=" (a TCP port; 0 = any free port)")),
        "token": (str, None),
        "threads": (int, whole(1, 256)),
        "processes": (int, whole(1, 16)),
        "self_check_interval": (NUMBER, positive),
        "stale_after": (dict, _stale_limits),
    },
}
SECTIONS = ("supervisor", "workers", *SECTION_KEYS)


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Everything the supervisor needs to run one child; equal specs mean 'unchanged' on reload."""

    name: str
    kind: str
    interval: float
    enabled: bool
    state_dir: str
    heartbeat_timeout: float
    startup_timeout: float
    stop_timeout: float
    backoff_initial: float
    backoff_max: float
    stable_after: float
    max_rss_mb: float
    stale_cycles: float
    log_lines_per_second: float
    options: dict  # the kind's own options
    sections: dict  # the shared tables ([api], ...) this kind reads


@dataclasses.dataclass(frozen=True)
class Config:
    path: str  # the file it came from, or "" for the embedded defaults
    state_dir: str
    escalate_after: int
    escalate_window: float
    preload: tuple  # modules imported before forking, shared copy-on-write by every child
    workers: dict  # name -> WorkerSpec, enabled or not
    raw: dict  # the merged tables, for the components that own other sections

    @property
    def enabled_workers(self):
        return {name: spec for name, spec in self.workers.items() if spec.enabled}


def defaults():
    source = importlib.resources.files("supervisor").joinpath("default_config.toml").read_text()
    return tomllib.loads(source)


def load(path=None, environ=None):
    """Read `path` (or only the defaults when None) and validate the merged result."""
    source = str(path) if path else "embedded defaults"
    override = {}
    if path:
        try:
            with open(path, "rb") as f:
                override = tomllib.load(f)
        except OSError as e:
            raise ConfigError([f"cannot read config file: {e.strerror}"], source) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"not valid TOML: {e}"], source) from None
    return from_tables(override, str(path or ""), environ, source)


def from_tables(override, path="", environ=None, source="config"):
    """Validate `override` (parsed TOML tables) merged over the embedded defaults."""
    environ = os.environ if environ is None else environ
    merged = merge(defaults(), override)
    problems = []
    config = _build(merged, override, path, environ, problems)
    if problems:
        raise ConfigError(problems, source)
    return config


def merge(base, override):
    """Deep-merge two TOML tables; `override` wins key by key."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _check(where, key, value, types, check, problems):
    ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if not ok_type:
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        problems.append(f"{where}.{key} = {value!r}: expected {names}")
        return False
    allowed = check(value) if check else None
    if allowed:
        problems.append(f"{where}.{key} = {value!r}: allowed is {allowed}")
        return False
    return True


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _build(merged, override, path, environ, problems):
    for section in merged:
        if section not in SECTIONS:
            problems.append(f"[{section}]: unknown section; allowed are " + ", ".join(f"[{s}]" for s in SECTIONS))
    for section, keys in SECTION_KEYS.items():
        table = merged.get(section, {})
        for key, value in (table.items() if isinstance(table, dict) else ()):
            if key not in keys:
                problems.append(f"{section}.{key} = {value!r}: unknown key; allowed are " + ", ".join(keys))
            else:
                _check(section, key, value, *keys[key], problems)
    sup = merged.get("supervisor", {})
    before = len(problems)
    for key, value in sup.items():
        if key not in SUPERVISOR_KEYS:
            problems.append(f"supervisor.{key} = {value!r}: unknown key; allowed are " + ", ".join(SUPERVISOR_KEYS))
        else:
            _check("supervisor", key, value, *SUPERVISOR_KEYS[key][:2], problems)
    supervisor_ok = len(problems) == before
    state_dir = sup.get("state_dir", DEFAULT_STATE_DIR)
    if "state_dir" not in override.get("supervisor", {}) and environ.get("STATE_DIRECTORY"):
        state_dir = environ["STATE_DIRECTORY"].split(":")[0]  # systemd's StateDirectory=
    state_dir = os.path.abspath(state_dir) if isinstance(state_dir, str) else DEFAULT_STATE_DIR
    workers = {}
    tables = merged.get("workers", {})
    if not isinstance(tables, dict):
        problems.append("workers: expected tables [workers.NAME]")
        tables = {}
    for name, table in tables.items():
        spec = _worker(name, table, merged, state_dir, problems, supervisor_ok)
        if spec:
            workers[name] = spec
    if not problems and not any(s.enabled for s in workers.values()):
        problems.append("workers: no worker is enabled; nothing to supervise")
    if not problems:
        _check_backoff_order(workers, problems)
    if problems:
        return None
    return Config(path, state_dir, sup["escalate_after"], float(sup["escalate_window"]), tuple(sup["preload"]),
                  workers, merged)


def _worker(name, table, merged, state_dir, problems, supervisor_ok):
    where = f"workers.{name}"
    sup = merged.get("supervisor", {})
    if not isinstance(table, dict):
        problems.append(f"{where} = {table!r}: expected a table [{where}]")
        return None
    if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 32:
        problems.append(f"[{where}]: worker names are letters, digits, '_' or '-', at most 32 characters")
    kind_name = table.get("kind")
    if kind_name is None:
        problems.append(f"{where}.kind is missing: allowed is one of " + ", ".join(sorted(KINDS)))
        return None
    before = len(problems)
    if "interval" not in table:
        problems.append(f"{where}.interval is missing: seconds between cycles, a number > 0")
    options = {}
    kind = KINDS.get(kind_name) if isinstance(kind_name, str) else None
    kind_options = kind.options if kind else {}
    for key, value in table.items():
        if key in WORKER_KEYS:
            _check(where, key, value, *WORKER_KEYS[key][:2], problems)
        elif key in PER_WORKER_KEYS:
            _check(where, key, value, *SUPERVISOR_KEYS[key][:2], problems)
        elif key in kind_options:
            opt = kind_options[key]
            if _check(where, key, value, opt.type, opt.check, problems):
                options[key] = value
        else:
            allowed = list(WORKER_KEYS) + list(PER_WORKER_KEYS) + list(kind_options)
            problems.append(f"{where}.{key} = {value!r}: unknown key; allowed are " + ", ".join(allowed))
    if len(problems) > before or not supervisor_ok:
        return None
    for key, opt in kind_options.items():
        options.setdefault(key, copy.deepcopy(opt.default))
    settings = {key: float(table.get(key, sup.get(key))) for key in PER_WORKER_KEYS}
    sections = {section: copy.deepcopy(merged.get(section, {})) for section in kind.sections}
    return WorkerSpec(
        name=name, kind=kind_name, interval=float(table["interval"]), enabled=table.get("enabled", True),
        state_dir=state_dir, options=options, sections=sections, **settings,
    )


def _check_backoff_order(workers, problems):
    for spec in workers.values():
        if spec.backoff_max < spec.backoff_initial:
            problems.append(
                f"workers.{spec.name}.backoff_max = {spec.backoff_max!r}: allowed is a number >= "
                f"backoff_initial ({spec.backoff_initial!r})"
            )
