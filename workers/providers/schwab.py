"""`schwab`: market data from the Schwab Trader API (marketdata/v1).

Endpoints (relative to `base_url`, default https://api.schwabapi.com):
  GET /marketdata/v1/quotes?symbols=A,B&fields=quote         -> quotes()
  GET /marketdata/v1/pricehistory?symbol=..&periodType=year&frequencyType=daily
                                                               -> daily_bars()
  GET /marketdata/v1/pricehistory?..periodType=day&frequencyType=minute
                                                               -> intraday_bars()
  GET /marketdata/v1/expirationchain?symbol=..                 -> expirations()
  GET /marketdata/v1/chains?symbol=..&fromDate=..&toDate=..   -> option_chain()
and POST {auth_url}/v1/oauth/token for access tokens (see schwab_auth). The
app key and secret come from the environment or [provider] secrets_file
(schwab_credentials); the login that writes the token file is
workers/schwab_login.py (`mdw-schwab-login`). `warnings()` says when the
refresh token nears its end (schwab_expiry), for the scanners' reports.

Every call has one total deadline (`timeout=` or `call_timeout_s`) covering the
token refresh, the shared request budget, every HTTP attempt and every retry
wait. One 401 triggers one refresh and one retry. Calls for one symbol go
through a per-symbol circuit breaker; quotes() lists a symbol's own failure in
`errors`, and raises only when the request failed as a whole and nothing came
back (the deadline, an HTTP error, a dead login), so the caller can tell a
failed batch from failed symbols.

Payloads are parsed in schwab_payloads.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from .base import AuthError, BadPayload, CircuitOpen, Provider, ProviderError, QuoteBatch
from .breaker import CircuitBreaker, counts_against_symbol
from .budget import RequestBudget
from .http import HttpClient, HttpConfig, deadline_in
from .schwab_auth import SchwabAuth
from .schwab_credentials import KEY_VARIABLE, SECRET_VARIABLE, AppCredentials, app_credentials
from .schwab_expiry import DEFAULT_WARN_BEFORE_S, ExpiryWatch
from .schwab_payloads import NEW_YORK, parse_candles, parse_chain, parse_quote, weekly_expirations
from .schwab_tokens import token_path

_SYMBOL = re.compile(r"^[A-Z$/][A-Z0-9./$]{0,11}$")
_DEFAULT = object()


def default_state_dir() -> str:
    return os.path.join(tempfile.gettempdir(), f"market-data-worker-{os.getuid()}")


@dataclass(frozen=True)
class SchwabConfig:
    """Settings for the schwab provider; `from_mapping` builds it from a config table."""

    token_path: str
    app_key: str = field(default="", repr=False)
    app_secret: str = field(default="", repr=False)
    base_url: str = "https://api.schwabapi.com"
    auth_url: str = "https://api.schwabapi.com"
    call_timeout_s: float = 20.0
    connect_timeout_s: float = HttpConfig.connect_timeout_s
    read_timeout_s: float = HttpConfig.read_timeout_s
    max_retries: int = HttpConfig.max_retries
    backoff_factor: float = HttpConfig.backoff_factor
    backoff_max_s: float = HttpConfig.backoff_max_s
    quotes_batch_size: int = 100
    state_dir: str | None = None  # where the shared request budget lives
    requests_per_minute: int = 120
    request_burst: int = 10
    breaker_failures: int = 5
    breaker_cooldown_s: float = 300.0
    refresh_margin_s: float = 120.0
    verify: bool | str = HttpConfig.verify
    secrets_file: str | None = None  # JSON with the app key and secret, when not in the environment
    warn_before_s: float = DEFAULT_WARN_BEFORE_S  # warn this long before the refresh token dies

    def __post_init__(self):
        for name in ("base_url", "auth_url"):
            if not str(getattr(self, name)).startswith(("http://", "https://")):
                raise ValueError(f"schwab {name} must be an http:// or https:// URL")
        for name in ("call_timeout_s", "connect_timeout_s", "read_timeout_s",
                     "requests_per_minute", "quotes_batch_size", "breaker_failures"):
            if not getattr(self, name) > 0:
                raise ValueError(f"schwab {name} must be > 0")
        if not self.warn_before_s >= 0:
            raise ValueError("schwab warn_before_s must be >= 0")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any],
                     environ: Mapping[str, str] = os.environ) -> "SchwabConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown schwab provider option(s) {', '.join(unknown)}; "
                             f"allowed: {', '.join(sorted(known))}")
        if not options.get("token_path"):
            raise ValueError("schwab provider needs token_path (the OAuth token JSON file)")
        values = dict(options)
        values.setdefault("app_key", environ.get(KEY_VARIABLE, ""))
        values.setdefault("app_secret", environ.get(SECRET_VARIABLE, ""))
        return cls(**values)

    def credentials(self) -> AppCredentials:
        """The app key and secret: app_key/app_secret (from the environment) when both are set,
        else those in secrets_file; AuthError naming what to set otherwise."""
        return app_credentials({KEY_VARIABLE: self.app_key, SECRET_VARIABLE: self.app_secret},
                               self.secrets_file)


def open_from_config(section: Mapping[str, Any], state_dir: str,
                     environ: Mapping[str, str] = os.environ,
                     wall_clock: Callable[[], float] = time.time) -> "SchwabProvider":
    """Build from the supervisor's [provider] table (base_url, auth_url, token_file and
    secrets_file relative to state_dir, requests_per_minute, request_timeout, warn_before); the
    app key and secret come from SCHWAB_APP_KEY / SCHWAB_APP_SECRET, else from secrets_file.
    Keys for others (kind, sim_*, callback_url: the login's) are ignored."""
    options: dict[str, Any] = {"state_dir": state_dir, "token_path": token_path(section, state_dir)}
    if section.get("secrets_file"):
        options["secrets_file"] = os.path.join(state_dir, section["secrets_file"])
    for key, name in (("base_url", "base_url"), ("auth_url", "auth_url"),
                      ("requests_per_minute", "requests_per_minute"),
                      ("request_timeout", "call_timeout_s"), ("warn_before", "warn_before_s")):
        if key in section:
            options[name] = section[key]
    if options.get("requests_per_minute", 120) <= SchwabConfig.request_burst:
        options["request_burst"] = max(1, options["requests_per_minute"] // 2)
    return SchwabProvider(SchwabConfig.from_mapping(options, environ), wall_clock=wall_clock)


class SchwabProvider(Provider):
    """The Schwab Trader API behind the Provider interface. Not thread-safe: one per process."""

    name = "schwab"

    def __init__(self, config: SchwabConfig, *, clock: Callable[[], dt.datetime] | None = None,
                 budget: RequestBudget | None | object = _DEFAULT,
                 breaker: CircuitBreaker | None = None,
                 wall_clock: Callable[[], float] = time.time):
        """`clock`: the market's (today's date); `wall_clock`: epoch seconds, for token times."""
        self.config = config
        self._clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        if budget is _DEFAULT:
            budget = RequestBudget(
                os.path.join(config.state_dir or default_state_dir(), "schwab-requests.bucket"),
                limit=config.requests_per_minute, burst=config.request_burst)
        self.http = HttpClient(HttpConfig(
            connect_timeout_s=config.connect_timeout_s, read_timeout_s=config.read_timeout_s,
            max_retries=config.max_retries, backoff_factor=config.backoff_factor,
            backoff_max_s=config.backoff_max_s, verify=config.verify), budget=budget)
        self.auth = SchwabAuth(self.http, token_path=config.token_path,
                               credentials=config.credentials, auth_url=config.auth_url,
                               refresh_margin_s=config.refresh_margin_s, wall_clock=wall_clock)
        self.expiry = ExpiryWatch(self.auth.file.path, config.warn_before_s, wall_clock=wall_clock)
        self.breaker = breaker or CircuitBreaker(config.breaker_failures,
                                                 config.breaker_cooldown_s)
        self._market = config.base_url.rstrip("/") + "/marketdata/v1"

    def close(self) -> None:
        self.http.close()

    def warnings(self) -> list[str]:
        """The refresh token's warning once it nears its end (see schwab_expiry); [] while the
        token file cannot be used: then every request fails, saying why."""
        try:
            tokens = self.auth.tokens()
        except ProviderError:
            return []
        return self.expiry.warnings(tokens)

    # -- plumbing -----------------------------------------------------------

    def _deadline(self, timeout: float | None) -> float:
        return deadline_in(self.config.call_timeout_s if timeout is None else timeout)

    def _get(self, endpoint: str, params: Mapping[str, Any], deadline: float) -> Any:
        """GET with a bearer token; on 401 refresh once and retry once."""
        url = f"{self._market}/{endpoint}"
        token = self.auth.access_token(deadline)
        try:
            return self.http.get_json(url, deadline=deadline, params=params,
                                      headers={"Authorization": f"Bearer {token}"},
                                      secrets=self.auth.secrets())
        except AuthError:
            token = self.auth.refresh(deadline, rejected=token)
        try:
            return self.http.get_json(url, deadline=deadline, params=params,
                                      headers={"Authorization": f"Bearer {token}"},
                                      secrets=self.auth.secrets())
        except AuthError as exc:
            raise AuthError(f"{exc}; still rejected right after a token refresh: check the "
                            f"app's market data entitlement") from None

    def _for_symbol(self, symbol: str, endpoint: str, params: Mapping[str, Any],
                    timeout: float | None, parse: Callable[[Any], Any]):
        """One call about one symbol, through its circuit breaker; parse errors count too."""
        if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
            raise ValueError(f"not a valid symbol: {symbol!r}")
        self.breaker.check(symbol)
        try:
            result = parse(self._get(endpoint, params, self._deadline(timeout)))
        except ProviderError as exc:
            exc.symbol = exc.symbol or symbol
            if counts_against_symbol(exc):
                self.breaker.record_failure(symbol, exc)
            else:
                self.breaker.release(symbol)
            raise
        except BaseException:
            self.breaker.release(symbol)
            raise
        self.breaker.record_success(symbol)
        return result

    def _today(self) -> dt.date:
        return pd.Timestamp(self._clock()).tz_convert(NEW_YORK).date()

    # -- quotes -------------------------------------------------------------------

    def quotes(self, symbols: Iterable[str], *, timeout: float | None = None) -> QuoteBatch:
        deadline = self._deadline(timeout)
        rows: dict[str, dict] = {}
        errors: dict[str, str] = {}
        admitted = []
        for symbol in dict.fromkeys([symbols] if isinstance(symbols, str) else symbols):
            if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
                errors[str(symbol)] = f"not a valid symbol: {symbol!r}"
                continue
            try:
                self.breaker.check(symbol)
            except CircuitOpen as exc:
                errors[symbol] = str(exc)
                continue
            admitted.append(symbol)
        size = max(1, self.config.quotes_batch_size)
        whole_failure = None
        for start in range(0, len(admitted), size):
            chunk = admitted[start:start + size]
            try:
                data = self._get("quotes", {"symbols": ",".join(chunk), "fields": "quote"},
                                 deadline)
                if not isinstance(data, dict):
                    raise BadPayload(f"GET /marketdata/v1/quotes: expected a JSON object keyed "
                                     f"by symbol, got {type(data).__name__}")
            except ProviderError as exc:
                for symbol in chunk:
                    self.breaker.release(symbol)
                    errors[symbol] = str(exc)
                if isinstance(exc, AuthError):
                    raise
                whole_failure = whole_failure or exc
                continue
            invalid = set((data.get("errors") or {}).get("invalidSymbols") or ()) \
                if isinstance(data.get("errors"), dict) else set()
            for symbol in chunk:
                try:
                    rows[symbol] = parse_quote(symbol, data.get(symbol), symbol in invalid)
                except BadPayload as exc:
                    errors[symbol] = str(exc)
                    self.breaker.record_failure(symbol, exc)
                else:
                    self.breaker.record_success(symbol)
        if whole_failure is not None and not rows:
            raise whole_failure  # nothing came back: the caller learns how the request failed
        ordered = {s: rows[s] for s in admitted if s in rows}
        return QuoteBatch.build(ordered, errors)

    # -- bars ---------------------------------------------------------------------

    def daily_bars(self, symbol: str, days: int = 365, *,
                   timeout: float | None = None) -> pd.DataFrame:
        if days < 1:
            raise ValueError("days must be >= 1")
        now = pd.Timestamp(self._clock())
        params = {"symbol": symbol, "periodType": "year", "frequencyType": "daily",
                  "frequency": 1, "needExtendedHoursData": "false",
                  "startDate": int((now - pd.Timedelta(days=days)).timestamp() * 1000),
                  "endDate": int(now.timestamp() * 1000)}
        return self._for_symbol(symbol, "pricehistory", params, timeout,
                                lambda data: parse_candles(symbol, data, daily=True))

    def intraday_bars(self, symbol: str, minutes: int = 5, days: int = 1, *,
                      timeout: float | None = None) -> pd.DataFrame:
        if minutes not in (1, 5, 10, 15, 30) or days not in (1, 2, 3, 4, 5, 10):
            raise ValueError("Schwab allows minutes 1, 5, 10, 15, 30 and days 1-5 or 10")
        params = {"symbol": symbol, "periodType": "day", "period": days,
                  "frequencyType": "minute", "frequency": minutes,
                  "needExtendedHoursData": "false"}
        return self._for_symbol(symbol, "pricehistory", params, timeout,
                                lambda data: parse_candles(symbol, data, daily=False))

    # -- options -------------------------------------------------------------------

    def expirations(self, symbol: str, count: int = 4, *,
                    timeout: float | None = None) -> list[dt.date]:
        today = self._today()
        return self._for_symbol(symbol, "expirationchain", {"symbol": symbol}, timeout,
                                lambda data: weekly_expirations(symbol, data, today)[:count])

    def option_chain(self, symbol: str, expiration: dt.date, strike_band_pct: float = 5.0, *,
                     timeout: float | None = None) -> pd.DataFrame:
        params = {"symbol": symbol, "contractType": "ALL", "strategy": "SINGLE",
                  "includeUnderlyingQuote": "true", "fromDate": expiration.isoformat(),
                  "toDate": expiration.isoformat()}
        return self._for_symbol(symbol, "chains", params, timeout,
                                lambda data: parse_chain(symbol, data, expiration,
                                                          strike_band_pct, self._today()))
