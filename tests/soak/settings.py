"""The soak's config file: the embedded defaults, overridden only where a soak must.

The file sets its own `state_dir`, a free API port and token, and shorter
supervisor timings so that many cycles and faults fit in minutes. Everything
else (the simulated market, the ~170-symbol universe, batch sizes, all six
workers) is the embedded default. `ConfigState` is what the soak may change at
run time (intervals, a hung symbol, the shutdown probe) and renders the file;
`broken_config` renders the rejected variants.

The dataset limit of a worker (README "What it scans": which worker writes
which table) is its longest interval in this soak + heartbeat_timeout +
backoff_max + stop_timeout, plus POLL_SLACK for the soak's own sampling.
"""
import dataclasses
import json

SCANNERS = ("watchlist", "whale_flows", "macd", "vpb", "ttm")
WORKERS = SCANNERS + ("api",)
WRITER = {"watchlist": "watchlist", "whale_flows": "whale_flows", "macd_scanner": "macd",
          "vpb_scanner": "vpb", "ttm_squeeze_scanner": "ttm"}  # dataset -> the worker that writes it
POLL_SLACK = 1.0  # the soak sees a write up to one poll (0.5 s) late, and a fault's time is its send time
HANG_ROUNDS = 2  # a hung batch is split, then its hung symbol is quarantined: two kills to isolate it
HANG_LENGTH = (55.0, 65.0)  # seconds a symbol hangs: longer than hang_allowance + the watchlist's limit
PROBE = "shutdown_probe"  # a worker that ignores SIGTERM, added just before the final shutdown


@dataclasses.dataclass(frozen=True)
class Timings:
    heartbeat_timeout: float = 5.0
    startup_timeout: float = 10.0
    stop_timeout: float = 2.0
    backoff_max: float = 5.0
    stable_after: float = 20.0
    request_timeout: float = 3.0  # below heartbeat_timeout, as the defaults are (10 < 30)
    intervals: dict = dataclasses.field(default_factory=lambda: {
        "watchlist": 10.0, "whale_flows": 30.0, "macd": 20.0, "vpb": 25.0, "ttm": 30.0, "api": 5.0})
    # A good reload switches a worker between its interval and this one.
    alternates: dict = dataclasses.field(default_factory=lambda: {
        "watchlist": 12.0, "whale_flows": 25.0, "macd": 24.0, "vpb": 20.0, "ttm": 25.0, "api": 4.0})

    def limit(self, worker):
        """Longest time `worker` may leave its dataset unwritten after its last write or fault."""
        interval = max(self.intervals[worker], self.alternates[worker])
        return interval + self.heartbeat_timeout + self.backoff_max + self.stop_timeout + POLL_SLACK

    @property
    def hang_allowance(self):
        """How long a hung symbol may cost a scanner before its quarantine must have isolated it."""
        return HANG_ROUNDS * (self.heartbeat_timeout + self.stop_timeout + self.backoff_max)

    def describe(self):
        intervals = ", ".join(f"{w} {self.intervals[w]:g}/{self.alternates[w]:g}" for w in WORKERS)
        return (f"heartbeat_timeout {self.heartbeat_timeout:g}, startup_timeout {self.startup_timeout:g}, "
                f"stop_timeout {self.stop_timeout:g}, backoff_max {self.backoff_max:g}, "
                f"stable_after {self.stable_after:g}, request_timeout {self.request_timeout:g}; "
                f"intervals (a good reload switches between the two): {intervals}")


@dataclasses.dataclass
class ConfigState:
    """What the soak has changed so far; `tables()` is the config file it implies."""

    timings: Timings
    state_dir: str
    port: int
    token: str
    intervals: dict = None
    hang_symbols: list = dataclasses.field(default_factory=list)
    probe: bool = False

    def __post_init__(self):
        if self.intervals is None:
            self.intervals = dict(self.timings.intervals)

    def tables(self):
        t = self.timings
        tables = {
            "supervisor": {"state_dir": self.state_dir, "heartbeat_timeout": t.heartbeat_timeout,
                           "startup_timeout": t.startup_timeout, "stop_timeout": t.stop_timeout,
                           "backoff_max": t.backoff_max, "stable_after": t.stable_after},
            "workers": {name: {"interval": self.intervals[name]} for name in WORKERS},
            "provider": {"request_timeout": t.request_timeout},
            "api": {"port": self.port, "token": self.token},
        }
        if self.hang_symbols:
            tables["provider"]["sim_hang_symbols"] = list(self.hang_symbols)
        if self.probe:
            # Ignores SIGTERM from its first beat on and never beats again: only a SIGKILL ends it,
            # and mdwd owes it stop_timeout seconds after its SIGTERM before sending one.
            tables["workers"][PROBE] = {"kind": "faulty", "mode": "ignore_term", "after": 0.0, "interval": 60.0,
                                        "heartbeat_timeout": 3600.0, "stale_cycles": 0}
        return tables

    def render(self):
        return to_toml(self.tables()).encode()


BROKEN = ("bad-toml", "unknown-key", "wrong-type", "non-utf8", "wrong-shape")
# (where in the tables, what to put there): the rest of the file is the good config
WRONG_SHAPES = ((("supervisor",), 1), (("supervisor",), "fast"), (("workers",), 1), (("workers", "watchlist"), 1),
                (("provider",), []), (("api",), 3))


def broken_config(state, variant, rng):
    """(bytes of a config file that mdwd must reject, keeping its running tree; what is wrong with it)."""
    good = state.render()
    if variant == "bad-toml":
        return good + b"\n[supervisor\nheartbeat_timeout = \n", "invalid TOML"
    if variant == "unknown-key":
        tables = state.tables()
        tables["workers"]["watchlist"]["intervall"] = 10.0
        return to_toml(tables).encode(), "an unknown key (workers.watchlist.intervall)"
    if variant == "wrong-type":
        tables = state.tables()
        tables["supervisor"]["heartbeat_timeout"] = "5s"
        return to_toml(tables).encode(), 'a wrong type (heartbeat_timeout = "5s")'
    if variant == "non-utf8":
        return good + b"\n# caf\xe9 \xff\xfe (latin-1 and stray bytes, not UTF-8)\n", "non-UTF-8 bytes"
    if variant == "wrong-shape":
        where, value = rng.choice(WRONG_SHAPES)
        tables = state.tables()
        parent = tables
        for key in where[:-1]:
            parent = parent[key]
        parent[where[-1]] = value
        return to_toml(tables).encode(), f"a wrong shape ({'.'.join(where)} = {_value(value)})"
    raise ValueError(f"unknown broken-config variant {variant!r}; known: {', '.join(BROKEN)}")


def to_toml(tables, prefix=""):
    """A small TOML writer for nested tables of strings, numbers, bools and lists."""
    scalars = {k: v for k, v in tables.items() if not isinstance(v, dict)}
    out = ""
    if scalars:
        out += (f"[{prefix}]\n" if prefix else "") + "".join(f"{k} = {_value(v)}\n" for k, v in scalars.items())
    for key, value in tables.items():
        if isinstance(value, dict):
            out += to_toml(value, f"{prefix}.{key}" if prefix else key)
    return out


def _value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return json.dumps(value)  # a JSON string, int or float is TOML too
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")
