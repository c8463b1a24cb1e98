"""The worker kinds of market-data-worker, the shared sections they read, and the embedded defaults.

`REGISTRY` is what the entry point (workers/service.py) hands the
supervisor (see supervisor/shared/registry.py): `[workers.NAME] kind = "..."`
selects a kind here; each kind's options are its own keys in that table,
validated against the `Option`s below, so a typo is an error naming the
key, never silently ignored. The entry point ("module:function") is imported
by the supervisor before it forks, so children share the imported code and
data with it (copy-on-write).

The drill kinds (`faulty`, which misbehaves on request, and `demo`) are not
part of the service: `with_drills()` adds them, for the tests, the
benchmarks and fire drills (`mdwd --drills`).

This module must stay cheap to import: it is read by `mdwd --check-config`.
"""
import importlib.resources
import re

from supervisor.shared.registry import Kind, Option, Registry, Section
from workers import budget_plan
from workers.alerts import settings as alert_settings
from supervisor.shared.checks import NUMBER, non_negative, one_of, positive, symbols, text, whole
from workers.universe import WATCHLIST, WHALE_SYMBOLS

# Datasets the API serves, each written by one kind ([api] stale_after names them).
DATASETS = ("watchlist", "whale_flows", "macd_scanner", "vpb_scanner", "ttm_squeeze_scanner", "cycle_scanner",
            "key_levels", "skew_metrics", "oi_flows", "market_sentiment")
SCHWAB_SECRETS = ("SCHWAB_*",)
# When a scanner works (workers/market_hours.py): "auto" is always on the simulated market and, on a
# real one, the kind's MARKET_SCHEDULES entry. Spelled here so that this module stays cheap to import.
SCHEDULE_CHOICES = ("auto", "always", "regular", "extended")
MARKET_SCHEDULES = {"watchlist": "extended", "whale_flows": "regular", "macd": "regular", "vpb": "regular",
                    "ttm": "regular", "cycle_scanner": "regular", "market_structure": "regular"}
SENTIMENT_SYMBOLS = ("SPY", "QQQ")
SENTIMENT_EXPIRATIONS = 5
API_SECRETS = ("MDW_API_TOKEN",)


def _scanner_options(default_symbols, market_schedule, **extra):
    """Options every scanner kind takes, plus its own."""
    return {
        "symbols": Option(list, list(default_symbols), "symbols to scan", symbols(allow_empty=False)),
        "schedule": Option(str, "auto", "when it works: always; regular (the NYSE session, plus one cycle after "
                                        "the close); extended (4:00-20:00 New York on trading days); auto: "
                                        f"always on the simulated market, else {market_schedule}",
                           one_of(*SCHEDULE_CHOICES)),
        "quarantine_seconds": Option(NUMBER, 900.0, "how long an item that hung or kept failing is skipped",
                                     positive),
        "quarantine_after": Option(int, 3, "consecutive failures that quarantine an item", whole(1, 1000)),
        **extra,
    }


_SIGNALS_OPTIONS = {"signal_retention_days": Option(NUMBER, 30.0, "days the signal history (GET /api/signals) "
                                                                   "keeps this scanner's signals", positive)}
_BARS_OPTIONS = {"days": Option(int, 365, "calendar days of daily bars per symbol", whole(60, 3650)),
                 **_SIGNALS_OPTIONS}


def _scanner(entry, help, options):
    return Kind(entry=entry, help=help, sections=("provider",), options=options, secrets=SCHWAB_SECRETS)


def _expirations_by_symbol(v):
    ok = all(isinstance(k, str) and k == k.strip().upper() and k and isinstance(n, int) and not isinstance(n, bool)
             and 1 <= n <= 12 for k, n in v.items())
    return None if ok else "a table of SYMBOL = whole number 1..12, e.g. {SPY = 5}"


def _structure_options():
    """The market_structure kind reads what whale_flows stored: it has no quarantine and no provider calls."""
    schedule = _scanner_options(WHALE_SYMBOLS, MARKET_SCHEDULES["market_structure"])
    return {
        "symbols": Option(list, list(WHALE_SYMBOLS), "symbols whose stored option chains it reads (whale_flows "
                          "stores them)", symbols(allow_empty=False)),
        "schedule": schedule["schedule"],
        "sentiment_symbols": Option(list, list(SENTIMENT_SYMBOLS), "symbols of GET /api/market_sentiment",
                                    symbols(allow_empty=True)),
        "sentiment_expirations": Option(int, SENTIMENT_EXPIRATIONS, "their next expirations the sentiment reads "
                                        "(whale_flows more_expirations must fetch as many)", whole(1, 12)),
        "max_chain_age": Option(NUMBER, 900.0, "seconds after which a stored chain is too old to read",
                                positive),
        "wait_for_chains": Option(NUMBER, 60.0, "seconds a cycle waits for whale_flows' first chains", non_negative),
        "skew_retention_days": Option(NUMBER, 7.0, "days of skew_metrics history kept", positive),
        "sentiment_retention_days": Option(NUMBER, 30.0, "days of market_sentiment history kept", positive),
        **_SIGNALS_OPTIONS,
    }


KINDS = {
    "watchlist": _scanner(
        "workers.watchlist:run", "quotes for the watchlist: price, daily change, volume",
        _scanner_options(WATCHLIST, MARKET_SCHEDULES["watchlist"],
                         batch_size=Option(int, 50, "symbols per quotes request", whole(1, 500))),
    ),
    "whale_flows": _scanner(
        "workers.whale_flows:run", "unusually large options trades in the next weekly expirations",
        _scanner_options(
            WHALE_SYMBOLS, MARKET_SCHEDULES["whale_flows"],
            expirations=Option(int, 4, "weekly expirations scanned per symbol", whole(1, 12)),
            strike_band_pct=Option(NUMBER, 10.0, "strikes within this percent of spot", positive),
            min_volume=Option(NUMBER, 500, "contracts traded today, at least", non_negative),
            min_vol_oi=Option(NUMBER, 2.0, "volume / open interest, at least", positive),
            min_premium=Option(NUMBER, 100_000.0, "traded notional (total_premium = volume x mark x 100) "
                               "in USD, at least", positive),
            retention_days=Option(NUMBER, 7.0, "days of flow history kept", positive),
            more_expirations=Option(dict, {s: SENTIMENT_EXPIRATIONS for s in SENTIMENT_SYMBOLS},
                                    "symbols scanned for more expirations than `expirations`, e.g. for the "
                                    "market sentiment's 5", _expirations_by_symbol),
            **_SIGNALS_OPTIONS,
        ),
    ),
    "macd": _scanner("workers.technical:run_macd", "MACD (12, 26, 9) crosses on daily bars",
                     _scanner_options(WATCHLIST, MARKET_SCHEDULES["macd"], **_BARS_OPTIONS)),
    "vpb": _scanner("workers.technical:run_vpb", "volume-price breakouts and breakdowns on daily bars",
                    _scanner_options(WATCHLIST, MARKET_SCHEDULES["vpb"], **_BARS_OPTIONS)),
    "ttm": _scanner("workers.technical:run_ttm", "TTM Squeeze on daily bars",
                    _scanner_options(WATCHLIST, MARKET_SCHEDULES["ttm"], **_BARS_OPTIONS)),
    "cycle_scanner": _scanner("workers.technical:run_cycles", "cycle peaks and bottoms (Ehlers-style phase) on "
                              "daily bars", _scanner_options(WATCHLIST, MARKET_SCHEDULES["cycle_scanner"],
                                                             **_BARS_OPTIONS)),
    "market_structure": Kind(
        entry="workers.market_structure:run", sections=("provider",), options=_structure_options(),
        help="key levels, skew and OI flows, market sentiment from the option chains whale_flows stores "
             "(no upstream request)"),
    "api": Kind(
        entry="api.worker:run",
        help="the HTTP status API (Bottle on a production WSGI server); beats after answering itself",
        # [provider]: the Schwab token's gauge, and the live fetches of /api/key_levels and /api/market_snapshot
        # (api/live.py: with the access token the scanners keep fresh; the API holds no Schwab app secret)
        sections=("api", "provider"), secrets=API_SECRETS,
    ),
    # Off while [alerts] names nowhere to deliver; stopped last, so that it can tell the stop.
    "alerts": Kind(
        entry="workers.alerts.service:run",
        help="tells a person (through apprise) about kills, crash loops, quarantines, stale data, the Schwab "
             "login, start and stop, and the signals asked for",
        sections=("alerts", "api"), secrets=alert_settings.SECRET_ENV, stop_last=True,  # [api]: stale_after
        needs=alert_settings.has_targets,
    ),
}

FAULT_MODES = (
    "healthy", "hang_sleep", "busy_loop", "sigstop", "socket_block", "ignore_term",
    "grandchild_ignores_term", "raise", "exit3", "segfault", "memory", "flood_stdout",
    "garbage_heartbeat", "oversized_heartbeat", "nested_heartbeat", "crash_at_start", "no_cycles",
)

DRILL_KINDS = {
    "demo": Kind(
        entry="workers.demo:run",
        help="demonstration worker: walks a list of items each interval, beating per item",
        options={
            "items": Option(list, ["alpha", "beta", "gamma"], "items processed each cycle"),
            "item_seconds": Option(NUMBER, 0.05, "seconds of simulated work per item", non_negative),
        },
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


# -- the shared sections -----------------------------------------------------------


def _stale_limits(v):
    ok = all(k in DATASETS and isinstance(x, NUMBER) and not isinstance(x, bool) and 0 < x < float("inf")
             for k, x in v.items())
    return None if ok else "a table of dataset = seconds > 0, datasets: " + ", ".join(DATASETS)


_ORIGIN = re.compile(r"https?://[^/?#\s@]+", re.IGNORECASE)  # a serialized origin: no path, no user


def _cors_origins(v):
    """[api] cors_origins: "*" (any origin may GET) and origins that may also POST (api/cors.py)."""
    ok = all(isinstance(o, str) and (o == "*" or _ORIGIN.fullmatch(o)) for o in v)
    return None if ok else ('a list of "*" and origins such as "https://dash.example.com" or '
                            '"http://localhost:3000" (scheme://host[:port], no path or trailing slash)')


def _provider_kind(v):
    return None if v in ("sim", "schwab", "yahoo") else "sim (the simulated market), schwab or yahoo"


def _fallback_kind(v):
    return None if v in ("", "yahoo") else '"" (none) or yahoo'


def _url(v):
    return None if v.startswith(("http://", "https://")) else "an http:// or https:// URL"


REFRESH_TOKEN_DAYS = 7


def _warn_before(v):
    ok = 0 <= v <= REFRESH_TOKEN_DAYS * 86400
    return None if ok else f"seconds, 0..{REFRESH_TOKEN_DAYS * 86400} (a Schwab refresh token lives 7 days)"


def _sim_only(table):
    """The simulated market's fault switches mean nothing to a real provider: say so."""
    if table.get("kind", "sim") == "sim":
        return []
    return [f"provider.{key} = {table[key]!r}: only the simulated market (kind = \"sim\") has it"
            for key in ("sim_hang_symbols", "sim_fail_symbols") if table.get(key)]


def _fallback_for_schwab(table):
    """A fallback stands in for Schwab's quotes and bars; behind anything else it would mean nothing."""
    fallback, kind = table.get("fallback", ""), table.get("kind", "sim")
    if not fallback or kind == "schwab":
        return []
    return [f"provider.fallback = {fallback!r}: only kind = \"schwab\" takes a fallback "
            f"(kind is {kind!r}); remove it, or use kind = {fallback!r} alone"]


def _provider_table(table):
    return _sim_only(table) + _fallback_for_schwab(table)


SECTIONS = {
    "provider": Section({
        "kind": (str, _provider_kind),
        "fallback": (str, _fallback_kind),
        "request_timeout": (NUMBER, positive),
        "requests_per_minute": (int, whole(1, 10000)),
        "sim_seed": (int, whole(0)),
        "base_url": (str, _url),
        "auth_url": (str, _url),
        "token_file": (str, text),
        "secrets_file": (str, text),
        "callback_url": (str, _url),
        "warn_before": (NUMBER, _warn_before),
        "sim_hang_symbols": (list, symbols(allow_empty=True)),
        "sim_fail_symbols": (list, symbols(allow_empty=True)),
    }, check=_provider_table),
    "alerts": Section({
        "urls": (list, None),  # checked by check_section, which never quotes an entry
        "urls_file": (str, None),
        "max_messages_per_minute": (int, whole(1, 600)),
        "timeout": (NUMBER, positive),
        "retry_initial": (NUMBER, positive),
        "retry_max": (NUMBER, positive),
        "events": (dict, None),
        "signals": (dict, None),
    }, check=alert_settings.check_section, hidden=("urls",)),
    "api": Section({
        "host": (str, text),
        "port": (int, whole(0, 65535, note=" (a TCP port; 0 = any free port)")),
        "token": (str, None),
        "threads": (int, whole(1, 256)),
        "processes": (int, whole(1, 16)),
        "self_check_interval": (NUMBER, positive),
        "stale_after": (dict, _stale_limits),
        "cors_origins": (list, _cors_origins),
    }),
}

def describe(config):
    """What `mdwd --check-config` says about a valid config: the request budget, the alerts."""
    return budget_plan.describe(config) + alert_settings.describe(config)


REGISTRY = Registry(
    kinds=KINDS, sections=SECTIONS,
    defaults=importlib.resources.files("workers").joinpath("default_config.toml").read_text(),
    secret_env=SCHWAB_SECRETS + API_SECRETS + alert_settings.SECRET_ENV, describe=describe,
)


def with_drills(registry=REGISTRY):
    """The registry plus the drill kinds (faulty, demo)."""
    return registry.with_kinds(**DRILL_KINDS)
