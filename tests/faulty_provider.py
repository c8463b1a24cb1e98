"""Upstream faults on demand, around any provider (for demonstrations and tests).

`[provider] sim_hang_symbols = ["TSLA"]` makes every call for TSLA block
forever, ignoring its timeout, exactly like the upstream read that froze the
old service for 27 hours; `sim_fail_symbols` makes them fail at once. With
neither set, the provider is used as it is.
"""
import time

from workers.providers.base import Provider, ProviderError


class FaultyProvider(Provider):
    def __init__(self, inner, hang=(), fail=()):
        self.inner = inner
        self.name = inner.name
        self.hang = frozenset(hang)
        self.fail = frozenset(fail)

    def _check(self, symbols):
        if self.hang.intersection(symbols):
            while True:  # never returns, never raises: only a kill ends this
                time.sleep(3600)
        failing = self.fail.intersection(symbols)
        if failing:
            raise ProviderError(f"simulated upstream failure for {', '.join(sorted(failing))}",
                                symbol=sorted(failing)[0])

    def quotes(self, symbols, *, timeout=None):
        symbols = list(symbols)
        self._check(symbols)
        return self.inner.quotes(symbols, timeout=timeout)

    def daily_bars(self, symbol, days=365, *, timeout=None):
        self._check([symbol])
        return self.inner.daily_bars(symbol, days, timeout=timeout)

    def intraday_bars(self, symbol, minutes=5, days=1, *, timeout=None):
        self._check([symbol])
        return self.inner.intraday_bars(symbol, minutes, days, timeout=timeout)

    def expirations(self, symbol, count=4, *, timeout=None):
        self._check([symbol])
        return self.inner.expirations(symbol, count, timeout=timeout)

    def option_chain(self, symbol, expiration, strike_band_pct=5.0, *, timeout=None):
        self._check([symbol])
        return self.inner.option_chain(symbol, expiration, strike_band_pct, timeout=timeout)

    def close(self):
        self.inner.close()
