"""Upstream faults on demand around any provider, for the scanner tests.

`fail` maps a symbol to the exception its calls raise (or holds symbols that
fail with a plain ProviderError): a call that touches one of them fails as a
whole, as a real batched request does when its server errs, times out or
trickles. `calls` records every call (method, symbols), so a test can see
how a batch was split.
"""
from workers.providers.base import Provider, ProviderError


class FaultyProvider(Provider):
    def __init__(self, inner, fail=()):
        self.inner = inner
        self.name = inner.name
        self.fail = fail
        self.calls = []

    def _check(self, method, symbols):
        self.calls.append((method, tuple(symbols)))
        failing = sorted(set(self.fail).intersection(symbols))
        if failing:
            error = self.fail[failing[0]] if isinstance(self.fail, dict) else None
            raise error or ProviderError(f"simulated upstream failure for {', '.join(failing)}", symbol=failing[0])

    def quotes(self, symbols, *, timeout=None):
        symbols = list(symbols)
        self._check("quotes", symbols)
        return self.inner.quotes(symbols, timeout=timeout)

    def daily_bars(self, symbol, days=365, *, timeout=None):
        self._check("daily_bars", [symbol])
        return self.inner.daily_bars(symbol, days, timeout=timeout)

    def intraday_bars(self, symbol, minutes=5, days=1, *, timeout=None):
        self._check("intraday_bars", [symbol])
        return self.inner.intraday_bars(symbol, minutes, days, timeout=timeout)

    def expirations(self, symbol, count=4, *, timeout=None):
        self._check("expirations", [symbol])
        return self.inner.expirations(symbol, count, timeout=timeout)

    def option_chain(self, symbol, expiration, strike_band_pct=5.0, *, timeout=None):
        self._check("option_chain", [symbol])
        return self.inner.option_chain(symbol, expiration, strike_band_pct, timeout=timeout)

    def close(self):
        self.inner.close()
