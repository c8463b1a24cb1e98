"""Per-symbol circuit breaker, driven by a fake clock."""
import pytest

from workers.providers.base import (AuthError, BadPayload, BudgetExhausted, CircuitOpen,
                                    DeadlineExceeded, HttpStatusError)
from workers.providers.breaker import BreakerState, CircuitBreaker, counts_against_symbol


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def breaker(clock):
    return CircuitBreaker(failure_threshold=3, cooldown_s=30.0, clock=clock)


def fail(breaker, key, times):
    for _ in range(times):
        breaker.check(key)
        breaker.record_failure(key, DeadlineExceeded("GET /x: deadline of 1.0s exceeded"))


def test_opens_after_threshold_consecutive_failures(breaker):
    fail(breaker, "AAPL", 2)
    assert breaker.state("AAPL") is BreakerState.CLOSED
    fail(breaker, "AAPL", 1)
    assert breaker.state("AAPL") is BreakerState.OPEN
    with pytest.raises(CircuitOpen) as info:
        breaker.check("AAPL")
    assert info.value.symbol == "AAPL"
    assert "3 consecutive failures" in str(info.value)
    assert "DeadlineExceeded" in str(info.value)
    assert info.value.retry_in == pytest.approx(30.0)


def test_success_resets_the_consecutive_count(breaker):
    fail(breaker, "AAPL", 2)
    breaker.check("AAPL")
    breaker.record_success("AAPL")
    fail(breaker, "AAPL", 2)
    assert breaker.state("AAPL") is BreakerState.CLOSED


def test_circuits_are_independent_per_symbol(breaker):
    fail(breaker, "AAPL", 3)
    breaker.check("MSFT")  # does not raise
    assert breaker.open_keys() == ["AAPL"]


def test_half_open_after_cooldown_admits_one_trial(breaker, clock):
    fail(breaker, "AAPL", 3)
    clock.now += 29.9
    with pytest.raises(CircuitOpen):
        breaker.check("AAPL")
    clock.now += 0.2
    breaker.check("AAPL")  # the trial
    assert breaker.state("AAPL") is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpen, match="trial call is already running"):
        breaker.check("AAPL")


def test_trial_success_closes_the_circuit(breaker, clock):
    fail(breaker, "AAPL", 3)
    clock.now += 31
    breaker.check("AAPL")
    breaker.record_success("AAPL")
    assert breaker.state("AAPL") is BreakerState.CLOSED
    fail(breaker, "AAPL", 2)
    assert breaker.state("AAPL") is BreakerState.CLOSED


def test_trial_failure_reopens_for_a_full_cooldown(breaker, clock):
    fail(breaker, "AAPL", 3)
    clock.now += 31
    fail(breaker, "AAPL", 1)
    assert breaker.state("AAPL") is BreakerState.OPEN
    clock.now += 29
    with pytest.raises(CircuitOpen):
        breaker.check("AAPL")
    clock.now += 2
    breaker.check("AAPL")


def test_released_trial_can_be_retried(breaker, clock):
    fail(breaker, "AAPL", 3)
    clock.now += 31
    breaker.check("AAPL")
    breaker.release("AAPL")
    breaker.check("AAPL")
    assert breaker.state("AAPL") is BreakerState.HALF_OPEN


def test_provider_wide_errors_do_not_count_against_a_symbol():
    assert counts_against_symbol(DeadlineExceeded("x"))
    assert counts_against_symbol(BadPayload("x"))
    assert counts_against_symbol(HttpStatusError("x", status=500))
    assert not counts_against_symbol(HttpStatusError("x", status=429))
    assert not counts_against_symbol(AuthError("x"))
    assert not counts_against_symbol(BudgetExhausted("x"))
    assert not counts_against_symbol(CircuitOpen("x"))


def test_rejects_nonsense_configuration(clock):
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0, clock=clock)
    with pytest.raises(ValueError):
        CircuitBreaker(cooldown_s=-1, clock=clock)
