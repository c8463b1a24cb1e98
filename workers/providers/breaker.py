"""Per-symbol circuit breaker.

A symbol whose calls keep failing (timeouts, 5xx, bad payloads) costs a full
deadline per scanner cycle and a share of the request budget every time. After
`failure_threshold` consecutive failures its circuit opens and calls for it are
refused at once with `CircuitOpen`; after `cooldown_s` one trial call is let
through (half-open): success closes the circuit, failure opens it again for
another cool-off.

    # CLOSED    -> OPEN       failure_threshold consecutive failures
    # OPEN      -> HALF_OPEN  cooldown_s elapsed, next check() admits one trial
    # HALF_OPEN -> CLOSED     the trial succeeded
    # HALF_OPEN -> OPEN       the trial failed

Only failures that say something about the symbol should be recorded; a
budget, auth or deadline problem of the whole provider should not open every
symbol's circuit (the Schwab provider decides which, see `counts_against_symbol`).
The clock is injectable (`time.monotonic` by default) so tests drive it exactly.
"""
from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass
from typing import Callable

from .base import AuthError, BudgetExhausted, CircuitOpen, HttpStatusError, ProviderError


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass
class _Circuit:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    changed_at: float = 0.0
    trial_in_flight: bool = False
    last_error: str = ""


class CircuitBreaker:
    """Independent circuits keyed by symbol (any hashable key works)."""

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must be >= 0")
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._circuits: dict[str, _Circuit] = {}
        self._lock = threading.Lock()

    def state(self, key: str) -> BreakerState:
        with self._lock:
            circuit = self._circuits.get(key)
            return circuit.state if circuit else BreakerState.CLOSED

    def open_keys(self) -> list[str]:
        """Keys whose circuit is open or half-open, for health reporting."""
        with self._lock:
            return sorted(key for key, circuit in self._circuits.items()
                          if circuit.state is not BreakerState.CLOSED)

    def check(self, key: str) -> None:
        """Raise CircuitOpen unless a call for `key` may go ahead now."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None or circuit.state is BreakerState.CLOSED:
                return
            now = self._clock()
            if circuit.state is BreakerState.OPEN:
                waited = now - circuit.changed_at
                if waited < self.cooldown_s:
                    raise CircuitOpen(
                        f"circuit open for {key} after {circuit.failures} consecutive "
                        f"failures (last: {circuit.last_error}); next trial in "
                        f"{self.cooldown_s - waited:.1f}s",
                        symbol=key, retry_in=self.cooldown_s - waited)
                self._transition(circuit, BreakerState.HALF_OPEN, now)
            if circuit.trial_in_flight:
                raise CircuitOpen(f"circuit half-open for {key}: a trial call is already running",
                                  symbol=key, retry_in=0.0)
            circuit.trial_in_flight = True

    def record_success(self, key: str) -> None:
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is None:
                return
            circuit.failures = 0
            circuit.trial_in_flight = False
            if circuit.state is not BreakerState.CLOSED:
                self._transition(circuit, BreakerState.CLOSED, self._clock())
            del self._circuits[key]

    def record_failure(self, key: str, error: BaseException | str = "") -> None:
        with self._lock:
            circuit = self._circuits.setdefault(key, _Circuit(changed_at=self._clock()))
            circuit.failures += 1
            circuit.trial_in_flight = False
            circuit.last_error = _short(error)
            if circuit.state is BreakerState.HALF_OPEN or (
                    circuit.state is BreakerState.CLOSED
                    and circuit.failures >= self.failure_threshold):
                self._transition(circuit, BreakerState.OPEN, self._clock())

    def release(self, key: str) -> None:
        """Forget a trial that ended without a verdict (e.g. budget exhausted before sending)."""
        with self._lock:
            circuit = self._circuits.get(key)
            if circuit is not None:
                circuit.trial_in_flight = False

    @staticmethod
    def _transition(circuit: _Circuit, new: BreakerState, now: float) -> None:
        """The only place a circuit changes state."""
        allowed = {
            BreakerState.CLOSED: {BreakerState.OPEN},
            BreakerState.OPEN: {BreakerState.HALF_OPEN},
            BreakerState.HALF_OPEN: {BreakerState.CLOSED, BreakerState.OPEN},
        }
        assert new in allowed[circuit.state], f"{circuit.state} -> {new}"
        circuit.state = new
        circuit.changed_at = now


def counts_against_symbol(error: ProviderError) -> bool:
    """True when `error` says the symbol itself is failing, not the provider as a whole."""
    if isinstance(error, (AuthError, BudgetExhausted, CircuitOpen)):
        return False
    if isinstance(error, HttpStatusError) and error.status == 429:
        return False
    return True


def _short(error: BaseException | str, limit: int = 120) -> str:
    text = str(error) if error else ""
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= limit else text[: limit - 3] + "..."
