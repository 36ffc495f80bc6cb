from __future__ import annotations

import pytest

from routing.resilience.circuit_breaker import CircuitBreaker


def test_concurrency_limit_and_rejection_count() -> None:
    breaker = CircuitBreaker(max_concurrent=2, max_pending=1)
    assert [breaker.try_acquire() for _ in range(3)] == [True, True, False]
    assert (breaker.active, breaker.rejected) == (2, 1)
    breaker.release()
    assert breaker.try_acquire()
    assert breaker.active == 2


def test_pending_limit_is_separate() -> None:
    breaker = CircuitBreaker(max_concurrent=1, max_pending=2)
    assert breaker.try_acquire()
    assert [breaker.try_acquire_pending() for _ in range(3)] == [True, True, False]
    assert (breaker.pending, breaker.rejected_pending, breaker.rejected) == (2, 1, 0)
    breaker.release_pending()
    assert breaker.try_acquire_pending()


def test_zero_pending_rejects_every_waiter() -> None:
    breaker = CircuitBreaker(max_concurrent=1, max_pending=0)
    assert not breaker.try_acquire_pending()


def test_unbalanced_release_is_an_error() -> None:
    breaker = CircuitBreaker(max_concurrent=1, max_pending=1)
    with pytest.raises(RuntimeError):
        breaker.release()
    with pytest.raises(RuntimeError):
        breaker.release_pending()
    with pytest.raises(ValueError):
        CircuitBreaker(max_concurrent=0, max_pending=0)
