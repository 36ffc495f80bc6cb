from __future__ import annotations

import random

import pytest

from routing.resilience.retry import CONNECT_FAILURE, RESET, TIMEOUT, RetryBudget, RetryPolicy


def test_budget_floor_allows_min_retry_concurrency_when_quiet() -> None:
    budget = RetryBudget(budget_percent=20, min_retry_concurrency=3)
    budget.request_started()
    assert [budget.try_acquire_retry() for _ in range(4)] == [True, True, True, False]
    assert budget.rejected == 1
    budget.release_retry()
    assert budget.try_acquire_retry()


def test_budget_scales_with_active_requests() -> None:
    budget = RetryBudget(budget_percent=20, min_retry_concurrency=3)
    for _ in range(50):
        budget.request_started()
    assert budget.limit() == 10.0
    granted = sum(budget.try_acquire_retry() for _ in range(15))
    assert granted == 10
    for _ in range(25):
        budget.request_finished()
    assert budget.limit() == 5.0
    assert not budget.try_acquire_retry()  # 10 retries active, above the new limit of 5
    for _ in range(6):
        budget.release_retry()
    assert budget.try_acquire_retry()


def test_zero_budget_and_zero_floor_refuses_every_retry() -> None:
    budget = RetryBudget(budget_percent=0, min_retry_concurrency=0)
    budget.request_started()
    assert not budget.try_acquire_retry()


@pytest.mark.parametrize("attempt", range(8))
def test_backoff_is_full_jitter_within_bounds(attempt: int) -> None:
    policy = RetryPolicy(
        3, frozenset({"5xx"}), backoff_base=0.025, backoff_max=0.25, rng=random.Random(attempt)
    )
    ceiling = min(0.25, 0.025 * 2**attempt)
    waits = [policy.backoff(attempt) for _ in range(500)]
    assert all(0.0 <= w <= ceiling for w in waits)
    # Full jitter spreads over the whole range, not just near the ceiling.
    assert min(waits) < ceiling * 0.1
    assert max(waits) > ceiling * 0.9


def test_backoff_survives_huge_attempt_numbers() -> None:
    policy = RetryPolicy(3, frozenset({"5xx"}), backoff_base=0.025, backoff_max=0.25)
    assert 0.0 <= policy.backoff(10_000) <= 0.25


def test_retry_on_classes_and_codes() -> None:
    policy = RetryPolicy(3, frozenset({"gateway-error", "429"}))
    assert policy.should_retry("status", 503)
    assert policy.should_retry("status", 429)
    assert not policy.should_retry("status", 500)
    assert not policy.should_retry("status", 404)
    assert policy.should_retry(CONNECT_FAILURE, None)
    assert policy.should_retry(TIMEOUT, None)


def test_5xx_includes_failures_without_status() -> None:
    policy = RetryPolicy(2, frozenset({"5xx"}))
    assert all(policy.should_retry("status", s) for s in (500, 501, 599))
    assert policy.should_retry(RESET, None)
    assert not policy.should_retry("status", 409)


def test_single_failure_kinds_and_retriable_4xx() -> None:
    policy = RetryPolicy(2, frozenset({"connect-failure", "retriable-4xx"}))
    assert policy.should_retry(CONNECT_FAILURE, None)
    assert not policy.should_retry(RESET, None)
    assert not policy.should_retry(TIMEOUT, None)
    assert policy.should_retry("status", 409)
    assert not policy.should_retry("status", 503)


def test_attempts_count_the_first_try_and_budget_settings_are_visible() -> None:
    policy = RetryPolicy(3, frozenset(), budget_percent=25, min_retry_concurrency=4)
    assert policy.max_retries == 2
    assert (policy.budget_percent, policy.min_retry_concurrency) == (25, 4)
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(0, frozenset())


def test_unknown_retry_on_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown retry_on 'sometimes'"):
        RetryPolicy(2, frozenset({"sometimes"}))
    with pytest.raises(ValueError, match="unknown retry_on '700'"):
        RetryPolicy(2, frozenset({"700"}))
