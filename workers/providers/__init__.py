"""Market-data providers: one interface (`Provider`), three implementations, one pairing.

    from workers.providers import create_provider
    with create_provider("sim", {"seed": 7}) as provider:
        batch = provider.quotes(["AAPL", "MSFT"])       # QuoteBatch; batch.errors
        bars = provider.daily_bars("AAPL", days=365)

`create_provider(name, options, state_dir=...)` builds "sim" (options: seed,
failing), "schwab" (options: the fields of `SchwabConfig`) or "yahoo" (options:
the fields of `YahooConfig`); `state_dir` is the default home of the
cross-process request budget. `FallbackProvider(primary, fallback)`
(fallback.py) asks a second provider for the quotes and daily bars the first
could not give. The implementations are imported lazily, so importing this
package pulls in neither requests nor yfinance.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

from .base import (BAR_COLUMNS, CHAIN_COLUMNS, QUOTE_COLUMNS, AuthError, BadPayload,
                   BudgetExhausted, CircuitOpen, DeadlineExceeded, HttpStatusError, Provider,
                   ProviderError, QuoteBatch)

PROVIDER_NAMES = ("sim", "schwab", "yahoo")

__all__ = ["AuthError", "BadPayload", "BudgetExhausted", "CircuitOpen", "DeadlineExceeded",
           "HttpStatusError", "Provider", "ProviderError", "QuoteBatch", "BAR_COLUMNS",
           "CHAIN_COLUMNS", "QUOTE_COLUMNS", "PROVIDER_NAMES", "create_provider",
           "SimProvider", "SchwabProvider", "SchwabConfig", "YahooProvider", "YahooConfig",
           "FallbackProvider"]


def create_provider(name: str, options: Mapping[str, Any] | None = None, *,
                    state_dir: str | None = None,
                    clock: Callable | None = None) -> Provider:
    """Build the provider `name` from a config table; ValueError names what is wrong."""
    options = dict(options or {})
    if name == "sim":
        from .sim import SimProvider
        unknown = sorted(set(options) - {"seed", "failing"})
        if unknown:
            raise ValueError(f"unknown sim provider option(s) {', '.join(unknown)}; "
                             f"allowed: failing, seed")
        return SimProvider(seed=int(options.get("seed", 0)), failing=options.get("failing"),
                           clock=clock)
    if name == "schwab":
        from .schwab import SchwabConfig, SchwabProvider
        if state_dir and not options.get("state_dir"):
            options["state_dir"] = state_dir
        return SchwabProvider(SchwabConfig.from_mapping(options), clock=clock)
    if name == "yahoo":
        from .yahoo import YahooConfig, YahooProvider
        if state_dir and not options.get("state_dir"):
            options["state_dir"] = state_dir
        return YahooProvider(YahooConfig.from_mapping(options), clock=clock)
    raise ValueError(f"unknown provider {name!r}; known: {', '.join(PROVIDER_NAMES)}")


def __getattr__(name: str):
    if name == "SimProvider":
        from .sim import SimProvider
        return SimProvider
    if name in ("SchwabProvider", "SchwabConfig"):
        from . import schwab
        return getattr(schwab, name)
    if name in ("YahooProvider", "YahooConfig"):
        from . import yahoo
        return getattr(yahoo, name)
    if name == "FallbackProvider":
        from .fallback import FallbackProvider
        return FallbackProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
