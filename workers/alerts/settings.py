"""The [alerts] section: what it may hold, where the URLs' secrets live, and the parsed settings.

Apprise URLs carry their service's secret (a Discord webhook's token, a
Telegram bot token, an SMTP password), so config.toml, which anyone on the box
may read, holds only:
- `${MDW_ALERT_NAME}`: a reference to a variable of the environment (the env
  file, /etc/market-data-worker/env, mode 0600); only the alerts worker sees
  the MDW_ALERT_* variables (its kind's `secrets`);
- a credential-free loopback URL (`json://127.0.0.1:8089/hook`): a local
  receiver, as tests and fire drills use.
Anything else is refused by `mdwd --check-config`, saying where it must go.
`urls_file` names a file (relative to state_dir) of URLs, one per line
(blank lines and `#` comments skipped), which must be mode 0600: a file its
group or others can read is refused when the URLs are read, like
[provider] secrets_file.

This module must stay cheap to import (kinds.py reads it for --check-config):
no apprise here.
"""
import dataclasses
import ipaddress
import os
import re
import stat
import urllib.parse

SECRET_PREFIX = "MDW_ALERT_"
SECRET_ENV = (SECRET_PREFIX + "*",)
ENV_FILE = "/etc/market-data-worker/env"
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# The operational alerts, each one switch of [alerts.events], on by default: switch -> the event kinds it covers.
EVENT_SWITCHES = {
    "killed": ("killed",),  # a worker killed for a hang (or stalled, over memory, garbled heartbeats)
    "flapping": ("flapping", "recovered"),  # a crash loop, and its end
    "escalated": ("escalated",),  # systemd asked to restart the whole service
    "quarantine": ("quarantined", "released"),
    "stale": ("stale", "fresh"),  # a dataset stale, and fresh again
    "schwab_login": ("token_expiring", "token_dead"),
    "service": ("started", "stopping", "stopped"),
}
# The signal history's kinds (workers/store/history.py SIGNAL_KINDS; a test keeps the two equal), spelled here
# so that this module stays cheap to import.
SIGNAL_KINDS = ("whale_flow", "macd_cross", "ttm_fire", "vpb_breakout", "vpb_breakdown", "cycle_peak",
                "cycle_bottom", "gamma_flip_cross", "sentiment_change")
DIRECTIONS = ("any", "bullish", "bearish")
SIGNAL_KEYS = {"enabled": bool, "symbols": list, "min_score": (int, float), "direction": str}


def reference(entry):
    """The variable a `${NAME}` entry names, or None."""
    match = _REFERENCE.fullmatch(entry.strip())
    return match.group(1) if match else None


def is_loopback_without_credentials(url):
    """Is `url` scheme://host[:port][/path] on a loopback address, with no user, password or query?"""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError:
        return False
    if not parts.scheme or not host or "@" in parts.netloc or parts.query or parts.fragment:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def where_secrets_go(scheme):
    return (f"a {scheme or 'such'}:// URL may hold a secret, and config.toml is readable by anyone on the box: "
            f"put it in the env file ({ENV_FILE}, mode 0600) as {SECRET_PREFIX}NAME=<url> and write "
            f"\"${{{SECRET_PREFIX}NAME}}\" here, or one per line in [alerts] urls_file (mode 0600); only "
            f"loopback URLs without credentials (json://127.0.0.1:PORT/path) may be written here")


def check_urls(urls):
    """Problem phrases for [alerts] urls, naming each entry by its index and scheme, never its value."""
    problems = []
    for index, entry in enumerate(urls):
        where = f"alerts.urls[{index}]"
        if not isinstance(entry, str) or not entry.strip():
            problems.append(f"{where}: expected a non-empty string (an apprise URL or \"${{{SECRET_PREFIX}NAME}}\")")
            continue
        name = reference(entry)
        if name is not None:
            if not name.startswith(SECRET_PREFIX) or name == SECRET_PREFIX:
                problems.append(f"{where} = \"${{{name}}}\": the variable must be named {SECRET_PREFIX}<something>: "
                                f"only the alerts worker sees those")
            continue
        if "${" in entry:
            problems.append(f"{where}: a reference is the whole entry, \"${{{SECRET_PREFIX}NAME}}\", nothing around it")
        elif not is_loopback_without_credentials(entry):
            problems.append(f"{where}: {where_secrets_go(urllib.parse.urlsplit(entry).scheme)}")
    if len(set(u for u in urls if isinstance(u, str))) < len(urls):
        problems.append("alerts.urls: an entry is listed twice")
    return problems


def _signal_table(kind, table):
    where = f"alerts.signals.{kind}"
    if not isinstance(table, dict):
        return [f"{where}: expected a table [{where}] (enabled, symbols, min_score, direction)"]
    problems = []
    for key, value in table.items():
        types = SIGNAL_KEYS.get(key)
        if types is None:
            problems.append(f"{where}.{key}: unknown key; allowed are {', '.join(SIGNAL_KEYS)}")
        elif not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
            expected = types.__name__ if isinstance(types, type) else "a number"
            problems.append(f"{where}.{key} = {value!r}: expected {expected}")
        elif key == "symbols" and not all(isinstance(s, str) and s == s.strip().upper() and s for s in value):
            problems.append(f"{where}.symbols = {value!r}: allowed is a list of upper-case ticker symbols ([] = all)")
        elif key == "direction" and value not in DIRECTIONS:
            problems.append(f"{where}.direction = {value!r}: allowed is one of {', '.join(DIRECTIONS)}")
        elif key == "min_score" and not 0 <= value < float("inf"):
            problems.append(f"{where}.min_score = {value!r}: allowed is a number >= 0")
    return problems


def check_section(table):
    """Problem lines for the whole [alerts] table (its keys' types are checked by the loader)."""
    problems = check_urls(table.get("urls", []))
    events = table.get("events", {})
    for key, value in events.items():
        if key not in EVENT_SWITCHES:
            problems.append(f"alerts.events.{key}: unknown event; allowed are {', '.join(EVENT_SWITCHES)}")
        elif not isinstance(value, bool):
            problems.append(f"alerts.events.{key} = {value!r}: expected true or false")
    for kind, signal_table in table.get("signals", {}).items():
        if kind not in SIGNAL_KINDS:
            problems.append(f"alerts.signals.{kind}: unknown signal; allowed are {', '.join(SIGNAL_KINDS)}")
        else:
            problems.extend(_signal_table(kind, signal_table))
    if table.get("retry_max", 600.0) < table.get("retry_initial", 10.0):
        problems.append(f"alerts.retry_max = {table['retry_max']!r}: allowed is a number >= retry_initial")
    return problems


def has_targets(tables):
    """The alerts kind's `needs`: None when [alerts] names somewhere to deliver, else why not."""
    section = tables.get("alerts") if isinstance(tables.get("alerts"), dict) else {}
    if section.get("urls") or section.get("urls_file"):
        return None
    return "no [alerts] urls or urls_file: nothing to deliver alerts to"


# -- at run time (the alerts worker, mdwctl alert-test) ------------------------------------


@dataclasses.dataclass(frozen=True)
class Target:
    """One configured destination: its URL (None when it cannot be had), what names it, and why not."""

    source: str  # how it is configured: the loopback URL, "${MDW_ALERT_X}", or "urls_file line 3"
    url: str = None
    problem: str = None


class UrlsFileError(Exception):
    """The urls_file cannot be used (missing, unreadable, readable by others)."""


def read_urls_file(path):
    """The URLs of a private file, one per line; UrlsFileError saying what to fix."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise UrlsFileError(f"[alerts] urls_file {path} is readable by others (mode {stat.S_IMODE(mode):04o}): "
                                    f"it holds secrets; chmod 600 {path}")
            data = f.read(1 << 20)
    except OSError as e:
        raise UrlsFileError(f"[alerts] urls_file {path} cannot be read: {e.strerror or e}") from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise UrlsFileError(f"[alerts] urls_file {path} is not UTF-8 text") from None
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip() and not line.strip().startswith("#")]


def targets(section, state_dir, environ=os.environ):
    """Every configured destination, in order: [alerts] urls, then the lines of urls_file."""
    found = []
    for entry in section.get("urls", []):
        name = reference(entry)
        if name is None:
            found.append(Target(entry, entry))
        elif environ.get(name, "").strip():
            found.append(Target(entry, environ[name].strip()))
        else:
            found.append(Target(entry, problem=f"{name} is not set in the environment: put {name}=<url> in the env "
                                               f"file ({ENV_FILE}) and restart the service"))
    if section.get("urls_file"):
        path = os.path.join(state_dir, section["urls_file"])
        try:
            found.extend(Target(f"urls_file line {n}", url) for n, url in read_urls_file(path))
        except UrlsFileError as e:
            found.append(Target("urls_file", problem=str(e)))
    return found


@dataclasses.dataclass(frozen=True)
class SignalFilter:
    kind: str
    enabled: bool = False
    symbols: frozenset = frozenset()  # empty: every symbol
    min_score: float = 0.0  # for signals that have a score (whale flows)
    direction: str = "any"

    def passes(self, signal):
        if not self.enabled or (self.symbols and signal["symbol"] not in self.symbols):
            return False
        if self.direction != "any" and signal.get("direction") != self.direction:
            return False
        score = signal.get("score")
        return score is None or score >= self.min_score


@dataclasses.dataclass(frozen=True)
class Settings:
    interval: float = 1.0
    max_messages_per_minute: int = 6
    timeout: float = 5.0
    retry_initial: float = 10.0
    retry_max: float = 600.0
    events: frozenset = frozenset(k for kinds in EVENT_SWITCHES.values() for k in kinds)  # event kinds switched on
    signals: tuple = ()  # SignalFilter per kind
    stale_after: dict = dataclasses.field(default_factory=dict)  # [api] stale_after, as /health counts it

    @classmethod
    def from_sections(cls, section, api_section=None, interval=1.0):
        switches = {**dict.fromkeys(EVENT_SWITCHES, True), **section.get("events", {})}
        signals = tuple(SignalFilter(kind, bool(t.get("enabled", False)), frozenset(t.get("symbols", ())),
                                     float(t.get("min_score", 0.0)), t.get("direction", "any"))
                        for kind, t in section.get("signals", {}).items())
        return cls(interval=float(interval),
                   max_messages_per_minute=int(section.get("max_messages_per_minute", 6)),
                   timeout=float(section.get("timeout", 5.0)),
                   retry_initial=float(section.get("retry_initial", 10.0)),
                   retry_max=float(section.get("retry_max", 600.0)),
                   events=frozenset(k for switch, on in switches.items() if on for k in EVENT_SWITCHES[switch]),
                   signals=signals, stale_after=dict((api_section or {}).get("stale_after") or {}))

    def wants_signal(self, signal):
        return any(f.kind == signal["kind"] and f.passes(signal) for f in self.signals)

    @property
    def any_signal(self):
        return any(f.enabled for f in self.signals)


def describe(config):
    """The lines `mdwd --check-config` prints about the alerts."""
    alerts = [spec for spec in config.workers.values() if spec.kind == "alerts"]
    if not alerts:
        return []
    off = [spec.off_reason for spec in alerts if spec.off_reason]
    if not any(spec.enabled for spec in alerts):
        return [f"alerts: off ({off[0] if off else 'disabled'})"]
    section = config.raw.get("alerts", {})
    settings = Settings.from_sections(section)
    where = [u if reference(u) or is_loopback_without_credentials(u) else "(hidden)" for u in section.get("urls", [])]
    where += [f"the URLs of urls_file {section['urls_file']}"] if section.get("urls_file") else []
    off_events = [switch for switch, on in section.get("events", {}).items() if not on]
    signals = [f.kind for f in settings.signals if f.enabled]
    lines = [f"alerts: to {', '.join(where)}; operational events: "
             f"{'all but ' + ', '.join(off_events) if off_events else 'all'}; signals: {', '.join(signals) or 'none'}"]
    for spec in alerts:
        if spec.enabled and spec.heartbeat_timeout <= 2 * settings.timeout + 1:
            lines.append(f"warning: workers.{spec.name}.heartbeat_timeout {spec.heartbeat_timeout:g} is not above "
                         f"2 x [alerts] timeout ({settings.timeout:g}s) + 1: a slow receiver would be killed as a hang")
    return lines
