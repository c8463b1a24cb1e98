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

from supervisor.checks import NUMBER, non_negative, one_of, positive, symbols, whole
from workers.universe import WATCHLIST, WHALE_SYMBOLS


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



def _scanner_options(default_symbols, **extra):
    """Options every scanner kind takes, plus its own."""
    return {
        "symbols": Option(list, list(default_symbols), "symbols to scan", symbols(allow_empty=False)),
        "quarantine_seconds": Option(NUMBER, 900.0, "how long an item that hung or kept failing is skipped",
                                     positive),
        "quarantine_after": Option(int, 3, "consecutive failures that quarantine an item", whole(1, 1000)),
        **extra,
    }


_BARS_OPTIONS = {"days": Option(int, 365, "calendar days of daily bars per symbol", whole(60, 3650))}

FAULT_MODES = (
    "healthy", "hang_sleep", "busy_loop", "sigstop", "socket_block", "ignore_term",
    "grandchild_ignores_term", "raise", "exit3", "segfault", "memory", "flood_stdout",
    "garbage_heartbeat", "oversized_heartbeat", "nested_heartbeat", "crash_at_start", "no_cycles",
)

KINDS = {
    "watchlist": Kind(
        entry="workers.watchlist:run", help="quotes for the watchlist: price, daily change, volume",
        sections=("provider",),
        options=_scanner_options(WATCHLIST, batch_size=Option(int, 50, "symbols per quotes request", whole(1, 500))),
    ),
    "whale_flows": Kind(
        entry="workers.whale_flows:run", help="unusually large options trades in the next weekly expirations",
        sections=("provider",),
        options=_scanner_options(
            WHALE_SYMBOLS,
            expirations=Option(int, 4, "weekly expirations scanned per symbol", whole(1, 12)),
            strike_band_pct=Option(NUMBER, 10.0, "strikes within this percent of spot", positive),
            min_volume=Option(NUMBER, 500, "contracts traded today, at least", non_negative),
            min_vol_oi=Option(NUMBER, 2.0, "volume / open interest, at least", positive),
            min_premium=Option(NUMBER, 100_000.0, "volume x mark x 100 in USD, at least", positive),
            retention_days=Option(NUMBER, 7.0, "days of flow history kept", positive),
        ),
    ),
    "macd": Kind(entry="workers.technical:run_macd", help="MACD (12, 26, 9) crosses on daily bars",
                 sections=("provider",), options=_scanner_options(WATCHLIST, **_BARS_OPTIONS)),
    "vpb": Kind(entry="workers.technical:run_vpb", help="volume-price breakouts and breakdowns on daily bars",
                sections=("provider",), options=_scanner_options(WATCHLIST, **_BARS_OPTIONS)),
    "ttm": Kind(entry="workers.technical:run_ttm", help="TTM Squeeze on daily bars",
                sections=("provider",), options=_scanner_options(WATCHLIST, **_BARS_OPTIONS)),
    "demo": Kind(
        entry="workers.demo:run",
        help="demonstration worker: walks a list of items each interval, beating per item",
        options={
            "items": Option(list, ["alpha", "beta", "gamma"], "items processed each cycle"),
            "item_seconds": Option(NUMBER, 0.05, "seconds of simulated work per item", non_negative),
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
            "mode": Option(str, "healthy", "how to misbehave", one_of(*FAULT_MODES)),
            "after": Option(NUMBER, 0.0, "seconds of healthy beating before misbehaving", non_negative),
            "beat_interval": Option(NUMBER, 0.1, "seconds between beats while healthy", positive),
            "memory_mb": Option(NUMBER, 200, "megabytes to allocate in mode memory", positive),
            "beat_log": Option(str, "", "file to append 'pid monotonic-time' to on every beat"),
            "import_modules": Option(list, [], "modules to import before working (memory benchmark)"),
        },
    ),
}
