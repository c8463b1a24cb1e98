"""A provider pair: the primary (Schwab) first, the fallback (Yahoo) for quotes and bars it cannot give.

`[provider] fallback = "yahoo"` wraps the configured provider in a
`FallbackProvider`. Which calls fall back:

- quotes() and daily_bars() only: the watchlist and the technical scanners
  stay fed while Schwab is down. Expirations and option chains never fall
  back: one whale scan would mix Schwab's reported Greeks with Yahoo's
  computed ones and two providers' implied volatilities and volumes, and
  scores would change meaning from one contract to the next. Intraday bars
  (no scanner uses them; Yahoo has no 10-minute bars) do not either.
- on every ProviderError of the primary, both kinds: a provider-wide failure
  (a dead login, a spent request budget, HTTP 429 or 5xx, a deadline, a
  connection failure) means the primary cannot answer anyone now; a symbol's
  own failure (Schwab does not know it, its answer was junk, its circuit is
  open) is the primary's view of that symbol, and Yahoo may still have it. A
  quote batch that came back with some symbols in `errors` asks the fallback
  for those symbols only. Anything else (ValueError for a bad argument) is a
  bug and is raised as is.

When both fail, the error raised is the one that is about the item
(outcomes.about_the_item, the scanners' own judgement) if only one of them
is, else the primary's; its message names both. So a dead Schwab login (an
AuthError reaching a scanner fails its cycle as provider-wide) does not fail
every cycle over the one symbol Yahoo does not know, which counts against
that symbol instead; Yahoo's rate limit does not hide that Schwab found the
symbol itself bad; and with both failing as a whole the cycle fails with
Schwab's reason (its dead login, its spent budget). While the primary is
being skipped (below), the fallback's error is raised as it is: Yahoo is the
provider then.

Skipping a primary that is down: a primary failing provider-wide costs a
whole deadline per call (a Schwab outage: request_timeout per symbol, before
Yahoo is asked). After DOWN_AFTER provider-wide failures in a row the primary
is skipped for COOLDOWN_S (a CircuitBreaker keyed by its name, breaker.py),
then one call tries it again. Each call gives each provider the whole
`timeout`, so a call that falls back after the primary's deadline takes up to
two request_timeouts plus Yahoo's own slack (yahoo.py: Yahoo has no total
deadline); heartbeat_timeout must stay above that (defaults: 30 > 2 x 10).

Honest counts: every result says who answered, `result.attrs["provider"]`
("schwab", "yahoo", or "schwab+yahoo" for a quote batch both answered, with
`attrs["answered_by"]`: symbol -> provider), and `request_counts()` returns
provider -> outcome -> calls, with the scanners' outcome labels, so
`mdw_provider_requests_total` counts Schwab's failure and Yahoo's answer each
under its own name. A skipped primary counts as `circuit_open`.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Callable, Iterable

import pandas as pd

from workers.outcomes import about_the_item, outcome

from .base import (BadPayload, CircuitOpen, HttpStatusError, Provider, ProviderError,
                   QuoteBatch, QUOTE_COLUMNS)
from .breaker import BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

DOWN_AFTER = 3
COOLDOWN_S = 60.0


class PrimarySkipped(CircuitOpen):
    """The primary was not asked: it is failing as a whole and its cool-off has not ended."""


def provider_wide(error: ProviderError) -> bool:
    """Does this failure of the primary say it cannot answer anyone now (not just this symbol)?"""
    if isinstance(error, (BadPayload, CircuitOpen)):
        return False
    if isinstance(error, HttpStatusError):
        return error.status == 429 or error.status >= 500
    return True  # auth, budget, deadline, connection


class FallbackProvider(Provider):
    """`primary` for everything; `fallback` for the quotes and daily bars it could not give."""

    def __init__(self, primary: Provider, fallback: Provider, *, down_after: int = DOWN_AFTER,
                 cooldown_s: float = COOLDOWN_S, clock: Callable[[], float] = time.monotonic):
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+{fallback.name}"
        self.circuit = CircuitBreaker(down_after, cooldown_s, clock)
        self.requests = {primary.name: collections.Counter(), fallback.name: collections.Counter()}

    def request_counts(self) -> dict[str, dict[str, int]]:
        """provider -> outcome -> calls made to it, by this process."""
        return {name: dict(counts) for name, counts in self.requests.items()}

    def close(self) -> None:
        try:
            self.primary.close()
        finally:
            self.fallback.close()

    # -- asking one provider ----------------------------------------------------------

    def _ask(self, provider: Provider, call: Callable[[Provider], object]):
        """One call to one provider, counted under its name."""
        try:
            result = call(provider)
        except ProviderError as exc:
            self.requests[provider.name][outcome(exc)] += 1
            raise
        self.requests[provider.name]["ok"] += 1
        return result

    def _ask_primary(self, call: Callable[[Provider], object]):
        """The primary, unless it is being skipped (CircuitOpen then); its verdict feeds the circuit."""
        name = self.primary.name
        try:
            self.circuit.check(name)
        except CircuitOpen as exc:
            self.requests[name]["circuit_open"] += 1
            raise PrimarySkipped(f"not asked, failing as a whole ({exc})",
                                 retry_in=exc.retry_in) from None
        try:
            result = self._ask(self.primary, call)
        except ProviderError as exc:
            if provider_wide(exc):
                self._record_down(exc)
            else:
                self.circuit.release(name)
            raise
        except BaseException:
            self.circuit.release(name)
            raise
        if self.circuit.state(name) is not BreakerState.CLOSED:
            log.warning("%s answers again; asking it first again", name)
        self.circuit.record_success(name)
        return result

    def _record_down(self, error: ProviderError) -> None:
        name = self.primary.name
        was = self.circuit.state(name)
        self.circuit.record_failure(name, error)
        if was is not BreakerState.OPEN and self.circuit.state(name) is BreakerState.OPEN:
            log.warning("%s is failing as a whole (%s); asking %s directly for %gs", name, error,
                        self.fallback.name, self.circuit.cooldown_s)

    def _both_failed(self, first: ProviderError, second: ProviderError) -> ProviderError:
        """The error to raise when neither answered; its message names both."""
        if isinstance(first, PrimarySkipped):
            chosen = second
        elif about_the_item(second) and not about_the_item(first):
            chosen = second
        else:
            chosen = first
        chosen.args = (f"{self.primary.name}: {first}; fallback {self.fallback.name}: {second}",)
        return chosen

    def _either(self, call: Callable[[Provider], object]):
        try:
            result, name = self._ask_primary(call), self.primary.name
        except ProviderError as first:
            try:
                result, name = self._ask(self.fallback, call), self.fallback.name
            except ProviderError as second:
                raise self._both_failed(first, second) from None
        if isinstance(result, pd.DataFrame):
            result.attrs["provider"] = name
        return result

    # -- the Provider interface ----------------------------------------------------------

    def quotes(self, symbols: Iterable[str], *, timeout: float | None = None) -> QuoteBatch:
        wanted = list(dict.fromkeys([symbols] if isinstance(symbols, str) else symbols))
        try:
            first = self._ask_primary(lambda p: p.quotes(wanted, timeout=timeout))
        except ProviderError as exc:
            try:
                rescue = self._ask(self.fallback, lambda p: p.quotes(wanted, timeout=timeout))
            except ProviderError as second:
                raise self._both_failed(exc, second) from None
            return _answered(rescue, {}, self.fallback.name)
        missing = [s for s in wanted if s not in first.index]
        if not missing:
            return _answered(first, {}, self.primary.name)
        try:
            rescue = self._ask(self.fallback, lambda p: p.quotes(missing, timeout=timeout))
        except ProviderError as exc:
            rescue = QuoteBatch.build({}, {s: str(exc) for s in missing})
        return self._merged(wanted, first, rescue)

    def _merged(self, wanted: list, first: QuoteBatch, rescue: QuoteBatch) -> QuoteBatch:
        rows, errors, answered_by = {}, {}, {}
        for symbol in wanted:
            for batch, name in ((first, self.primary.name), (rescue, self.fallback.name)):
                if symbol in batch.index:
                    rows[symbol] = batch.loc[symbol, list(QUOTE_COLUMNS)].to_dict()
                    answered_by[symbol] = name
                    break
            else:
                errors[symbol] = (f"{self.primary.name}: {first.errors.get(symbol, 'no quote')}; "
                                  f"fallback {self.fallback.name}: "
                                  f"{rescue.errors.get(symbol, 'no quote')}")
        return _answered(QuoteBatch.build(rows, errors), answered_by, None)

    def daily_bars(self, symbol: str, days: int = 365, *,
                   timeout: float | None = None) -> pd.DataFrame:
        return self._either(lambda p: p.daily_bars(symbol, days, timeout=timeout))

    def intraday_bars(self, symbol: str, minutes: int = 5, days: int = 1, *,
                      timeout: float | None = None) -> pd.DataFrame:
        return self._ask(self.primary, lambda p: p.intraday_bars(symbol, minutes, days,
                                                                 timeout=timeout))

    def expirations(self, symbol: str, count: int = 4, *, timeout: float | None = None):
        return self._ask(self.primary, lambda p: p.expirations(symbol, count, timeout=timeout))

    def option_chain(self, symbol, expiration, strike_band_pct: float = 5.0, *,
                     timeout: float | None = None) -> pd.DataFrame:
        return self._ask(self.primary, lambda p: p.option_chain(symbol, expiration,
                                                                strike_band_pct, timeout=timeout))


def _answered(batch: QuoteBatch, answered_by: dict, name: str | None) -> QuoteBatch:
    """Stamp a quote batch with who answered it (each row; the batch as a whole)."""
    answered_by = answered_by or {symbol: name for symbol in batch.index}
    batch.attrs["answered_by"] = answered_by
    batch.attrs["provider"] = "+".join(dict.fromkeys(answered_by.values())) or (name or "")
    return batch
