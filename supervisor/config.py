"""Configuration: embedded defaults, overridden key by key by one TOML file.

`load(path, registry)` returns a validated `Config` or raises `ConfigError`
carrying one line per problem, each naming the key, the value and what is
allowed; nothing else comes out of it, whatever the file holds (bytes that
are not UTF-8, a section that is not a table, nesting deep enough to exhaust
the recursion limit). Unknown keys and sections are errors. Durations are
seconds (int or float, finite). The worker kinds, the shared sections they
read and the embedded defaults come from the `registry` (supervisor/shared/
registry.py): this module knows none of them.

The value of a key that looks secret (its name holds token, secret,
password or key) is never echoed in a message.
"""
import copy
import dataclasses
import math
import os
import re
import tomllib

from supervisor.shared.checks import NUMBER, positive, text, whole, zero_is_off
from supervisor.shared.paths import resolve_state_dir
_SECRET_NAME = re.compile(r"token|secret|password|key", re.IGNORECASE)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, problems, source="config"):
        self.problems = [_CONTROL.sub(lambda m: repr(m.group())[1:-1], p) for p in problems]  # one line each
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
WORKER_KEYS = {"interval": (NUMBER, positive), "enabled": (bool, None)}


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """Everything the supervisor needs to run one child; equal specs mean 'unchanged' on reload."""

    name: str
    kind: str
    entry: str  # the kind's entry point, "module:function"
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
    sections: dict  # the shared tables ([provider], ...) this kind reads
    secrets: tuple = ()  # the secret environment variables this kind may see
    stop_last: bool = False  # on shutdown, stopped only once every other worker has exited
    off_reason: str = ""  # why a worker not enabled is off by itself (its kind has nothing to do), or ""


@dataclasses.dataclass(frozen=True)
class Config:
    path: str  # the file it came from, or "" for the embedded defaults
    state_dir: str
    escalate_after: int
    escalate_window: float
    preload: tuple  # modules imported before forking, shared copy-on-write by every child
    workers: dict  # name -> WorkerSpec, enabled or not
    raw: dict  # the merged tables, for the components that own other sections
    secret_env: tuple = ()  # patterns of secret environment variables (the registry's)

    @property
    def enabled_workers(self):
        return {name: spec for name, spec in self.workers.items() if spec.enabled}

    @property
    def off_workers(self):
        """name -> why, for the workers off by themselves (their kind has nothing to do), not by choice."""
        return {name: spec.off_reason for name, spec in self.workers.items() if spec.off_reason}


def defaults(registry):
    return tomllib.loads(registry.defaults)


def read_file(path):
    """The TOML tables of a config file; ConfigError for a file that cannot be read or parsed."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ConfigError([f"cannot read config file: {e.strerror or e}"], source) from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError([f"not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start}"], source) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"not valid TOML: {e}"], source) from None
    except RecursionError:
        raise ConfigError(["not usable TOML: arrays or tables nest too deeply"], source) from None


def load(path=None, *, registry, environ=None, state_dir=None):
    """Read `path` (or only the defaults when None) and validate the merged result. `state_dir`
    (mdwd --state-dir) wins over the config's and the default one."""
    override = read_file(path) if path else {}
    return from_tables(override, str(path or ""), environ, str(path) if path else "embedded defaults",
                       registry=registry, state_dir=state_dir)


def from_tables(override, path="", environ=None, source="config", *, registry, state_dir=None):
    """Validate `override` (parsed TOML tables) merged over the embedded defaults."""
    environ = os.environ if environ is None else environ
    try:
        merged = merge(defaults(registry), override)
        problems = []
        config = _build(merged, override, path, environ, problems, registry, state_dir)
    except RecursionError:
        raise ConfigError(["arrays or tables nest too deeply"], source) from None
    if problems:
        raise ConfigError(problems, source)
    return config


def state_dir_of(tables, environ, config_path=""):
    """Where the state lives, from the parsed tables of the config file at `config_path`: its
    [supervisor] state_dir (relative to the file's folder), else $STATE_DIRECTORY, else
    ~/.local/state/market-data-worker (supervisor/shared/paths.py); absolute."""
    sup = tables.get("supervisor") if isinstance(tables.get("supervisor"), dict) else {}
    return resolve_state_dir(sup.get("state_dir"), config_path, environ)


def merge(base, override):
    """Deep-merge two TOML tables; `override` wins key by key."""
    result = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _shown(key, value, hide=False):
    """A value as a message may quote it: never the value of a secret-looking or hidden key."""
    return "(hidden)" if hide or _SECRET_NAME.search(str(key)) else repr(value)


def _check(where, key, value, types, check, problems, hide=False):
    ok_type = isinstance(value, types) and not (isinstance(value, bool) and bool not in _as_tuple(types))
    if not ok_type:
        names = " or ".join(t.__name__ for t in _as_tuple(types))
        problems.append(f"{where}.{key} = {_shown(key, value, hide)}: expected {names}")
        return False
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{where}.{key} = {_shown(key, value, hide)}: allowed is a finite number")
        return False
    allowed = check(value) if check else None
    if allowed:
        problems.append(f"{where}.{key} = {_shown(key, value, hide)}: allowed is {allowed}")
        return False
    return True


def _as_tuple(types):
    return types if isinstance(types, tuple) else (types,)


def _unknown(where, key, value, allowed, problems, hide=False):
    problems.append(f"{where}.{key} = {_shown(key, value, hide)}: unknown key; allowed are " + ", ".join(allowed))


def _tables_only(merged, registry, problems):
    """Every section is a table; a section that is not is reported, and checked as its default."""
    sections = ("supervisor", "workers", *registry.sections)
    default = defaults(registry)
    for section, value in list(merged.items()):
        if section not in sections:
            problems.append(f"[{section}]: unknown section; allowed are " + ", ".join(f"[{s}]" for s in sections))
            del merged[section]
        elif not isinstance(value, dict):
            problems.append(f"{section} = {_shown(section, value)}: expected a table [{section}]")
            merged[section] = default.get(section, {})


def _build(merged, override, path, environ, problems, registry, forced_state_dir=None):
    _tables_only(merged, registry, problems)
    for section, spec in registry.sections.items():
        table = merged.get(section, {})
        ok = True
        for key, value in table.items():
            if key not in spec.keys:
                _unknown(section, key, value, spec.keys, problems, hide=bool(spec.hidden))  # a misspelt secret
                ok = False
            else:
                ok = _check(section, key, value, *spec.keys[key], problems, hide=key in spec.hidden) and ok
        if ok and spec.check:
            problems.extend(spec.check(table))
    sup = merged.get("supervisor", {})
    before = len(problems)
    for key, value in sup.items():
        if key not in SUPERVISOR_KEYS:
            _unknown("supervisor", key, value, SUPERVISOR_KEYS, problems)
        else:
            _check("supervisor", key, value, *SUPERVISOR_KEYS[key][:2], problems)
    supervisor_ok = len(problems) == before
    if supervisor_ok and sup["backoff_max"] < sup["backoff_initial"]:  # once, naming the key the file set
        own = override.get("supervisor") if isinstance(override.get("supervisor"), dict) else {}
        if "backoff_max" in own or "backoff_initial" not in own:
            problems.append(f"supervisor.backoff_max = {sup['backoff_max']!r}: allowed is a number >= "
                            f"backoff_initial ({sup['backoff_initial']:g})")
        else:
            problems.append(f"supervisor.backoff_initial = {sup['backoff_initial']!r}: allowed is a number <= "
                            f"backoff_max ({sup['backoff_max']:g})")
        supervisor_ok = False
    state_dir = os.path.abspath(forced_state_dir) if forced_state_dir else state_dir_of(override, environ, path)
    workers = {}
    for name, table in merged.get("workers", {}).items():
        spec = _worker(name, table, merged, state_dir, problems, supervisor_ok, registry)
        if spec:
            workers[name] = spec
    if not problems and not any(s.enabled for s in workers.values()):
        problems.append("workers: no worker is enabled; nothing to supervise")
    if problems:
        return None
    return Config(path, state_dir, sup["escalate_after"], float(sup["escalate_window"]), tuple(sup["preload"]),
                  workers, merged, tuple(registry.secret_env))


def _worker(name, table, merged, state_dir, problems, supervisor_ok, registry):
    where = f"workers.{name}"
    sup = merged.get("supervisor", {})
    kinds = registry.kinds
    if not isinstance(table, dict):
        problems.append(f"{where} = {_shown(name, table)}: expected a table [{where}]")
        return None
    if not name.replace("_", "").replace("-", "").isalnum() or len(name) > 32:
        problems.append(f"[{where}]: worker names are letters, digits, '_' or '-', at most 32 characters")
    kind_name = table.get("kind")
    if kind_name is None:
        problems.append(f"{where}.kind is missing: allowed is one of " + ", ".join(sorted(kinds)))
        return None
    if not isinstance(kind_name, str) or kind_name not in kinds:
        problems.append(f"{where}.kind = {kind_name!r}: allowed is one of " + ", ".join(sorted(kinds)))
        return None
    kind = kinds[kind_name]
    before = len(problems)
    if "interval" not in table:
        problems.append(f"{where}.interval is missing: seconds between cycles, a number > 0")
    options = {}
    for key, value in table.items():
        if key == "kind":
            continue
        if key in WORKER_KEYS:
            _check(where, key, value, *WORKER_KEYS[key], problems)
        elif key in PER_WORKER_KEYS:
            _check(where, key, value, *SUPERVISOR_KEYS[key][:2], problems)
        elif key in kind.options:
            opt = kind.options[key]
            if _check(where, key, value, opt.type, opt.check, problems):
                options[key] = value
        else:
            _unknown(where, key, value, ["kind", *WORKER_KEYS, *PER_WORKER_KEYS, *kind.options], problems)
    if len(problems) > before or not supervisor_ok:
        return None
    settings = {key: float(table.get(key, sup.get(key))) for key in PER_WORKER_KEYS}
    if settings["backoff_max"] < settings["backoff_initial"]:  # reported where it was set, once
        if "backoff_max" in table:
            problems.append(f"{where}.backoff_max = {table['backoff_max']!r}: allowed is a number >= "
                            f"backoff_initial ({settings['backoff_initial']:g})")
        else:
            problems.append(f"{where}.backoff_initial = {table['backoff_initial']!r}: allowed is a number <= "
                            f"backoff_max ({settings['backoff_max']:g})")
        return None
    for key, opt in kind.options.items():
        options.setdefault(key, copy.deepcopy(opt.default))
    sections = {section: copy.deepcopy(merged.get(section, {})) for section in kind.sections}
    enabled, off_reason = table.get("enabled", True), ""
    lacking = kind.needs(merged) if kind.needs and enabled else None
    if lacking and table.get("enabled") is True:
        problems.append(f"{where}.enabled = true: {lacking}")
        return None
    if lacking:
        enabled, off_reason = False, lacking
    return WorkerSpec(
        name=name, kind=kind_name, entry=kind.entry, interval=float(table["interval"]),
        enabled=enabled, state_dir=state_dir, options=options, sections=sections,
        secrets=tuple(kind.secrets), stop_last=kind.stop_last, off_reason=off_reason, **settings,
    )
