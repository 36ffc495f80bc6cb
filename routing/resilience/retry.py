"""Retries, limited by a budget rather than only by a count.

A fixed count ("retry up to 3 times") multiplies load exactly when the upstream can least afford it:
when every request fails, every request becomes four, and a brief overload turns into a retry storm
that keeps the upstream down. A budget ties retries to live traffic instead: at most
`budget_percent`% of the requests in flight may be retries (with a floor of `min_retry_concurrency`
so that a quiet cluster can still retry). Isolated failures are retried freely; a widespread outage
adds at most that fraction of load. The per-request `attempts` cap still bounds any single request.
This is Envoy's retry budget; linkerd and Finagle use the same idea.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

# Failure kinds the data path reports when no HTTP status came back.
CONNECT_FAILURE = "connect-failure"
RESET = "reset"
TIMEOUT = "timeout"

# Envoy's retry_on names: an explicit status code, a status class, or a failure without a status.
_GATEWAY_ERRORS = frozenset({502, 503, 504})
_NO_ANSWER = frozenset({CONNECT_FAILURE, RESET, TIMEOUT})
# 409 Conflict is the only 4xx that Envoy considers safe to retry (optimistic-concurrency clashes).
_RETRIABLE_4XX = frozenset({409})

# Envoy's defaults: 20% of active requests may be retries, with room for 3 at any load.
DEFAULT_BUDGET_PERCENT = 20.0
DEFAULT_MIN_RETRY_CONCURRENCY = 3
# Envoy's default back-off: 25 ms base, capped at ten times that.
DEFAULT_BACKOFF_BASE_S = 0.025
DEFAULT_BACKOFF_MAX_S = 0.250
# 2 ** 62 seconds is already beyond any cap; larger exponents would only overflow the float.
_MAX_BACKOFF_EXPONENT = 62


class RetryBudget:
    """Counts active requests and retries; grants a retry while retries stay within the budget."""

    __slots__ = ("active_requests", "active_retries", "budget_percent", "min_retry_concurrency", "rejected")

    def __init__(
        self,
        budget_percent: float = DEFAULT_BUDGET_PERCENT,
        min_retry_concurrency: int = DEFAULT_MIN_RETRY_CONCURRENCY,
    ) -> None:
        if not 0 <= budget_percent <= 100 or min_retry_concurrency < 0:
            raise ValueError("budget_percent must be within 0..100 and min_retry_concurrency >= 0")
        self.budget_percent = budget_percent
        self.min_retry_concurrency = min_retry_concurrency
        self.active_requests = 0
        self.active_retries = 0
        self.rejected = 0

    def request_started(self) -> None:
        self.active_requests += 1

    def request_finished(self) -> None:
        self.active_requests -= 1

    def limit(self) -> float:
        """How many retries may be active right now."""
        return max(self.min_retry_concurrency, self.budget_percent / 100.0 * self.active_requests)

    def try_acquire_retry(self) -> bool:
        """True (and counted) when one more retry fits the budget; release it with release_retry()."""
        if self.active_retries < self.limit():
            self.active_retries += 1
            return True
        self.rejected += 1
        return False

    def release_retry(self) -> None:
        self.active_retries -= 1


class RetryPolicy:
    """What to retry, how often and how long to wait; owns the budget shared by its requests.

    `attempts` counts every try including the first, so attempts=3 allows two retries. `retry_on`
    takes Envoy's names: `5xx`, `gateway-error` (502/503/504), `retriable-4xx` (409),
    `connect-failure`, `reset`, `timeout`, or explicit status codes such as "429". `5xx` and
    `gateway-error` include the failures without a status, as in Envoy.
    """

    __slots__ = (
        "_kinds",
        "_rng",
        "_statuses",
        "attempts",
        "backoff_base",
        "backoff_max",
        "budget",
        "retry_on",
    )

    def __init__(
        self,
        attempts: int,
        retry_on: frozenset[str],
        budget_percent: float = DEFAULT_BUDGET_PERCENT,
        min_retry_concurrency: int = DEFAULT_MIN_RETRY_CONCURRENCY,
        backoff_base: float = DEFAULT_BACKOFF_BASE_S,
        backoff_max: float = DEFAULT_BACKOFF_MAX_S,
        *,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts counts the first try too, so it must be at least 1")
        if backoff_base <= 0 or backoff_max < backoff_base:
            raise ValueError("back-off must satisfy 0 < backoff_base <= backoff_max")
        self.attempts = attempts
        self.retry_on = retry_on
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.budget = RetryBudget(budget_percent, min_retry_concurrency)
        self._statuses, self._kinds = _parse_retry_on(retry_on)
        self._rng = rng if rng is not None else random.Random()

    @property
    def budget_percent(self) -> float:
        return self.budget.budget_percent

    @property
    def min_retry_concurrency(self) -> int:
        return self.budget.min_retry_concurrency

    @property
    def max_retries(self) -> int:
        return self.attempts - 1

    def should_retry(self, failure_kind: str, status: int | None) -> bool:
        """Whether this outcome is retriable by policy (the budget and attempt count are apart)."""
        if status is not None:
            return status in self._statuses
        return failure_kind in self._kinds

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry): full jitter,
        uniform in [0, min(max, base x 2**attempt)], so that clients that failed together do not
        retry together."""
        ceiling = min(
            self.backoff_max, self.backoff_base * 2.0 ** min(max(attempt, 0), _MAX_BACKOFF_EXPONENT)
        )
        return self._rng.uniform(0.0, ceiling)


def _parse_retry_on(names: Iterable[str]) -> tuple[frozenset[int], frozenset[str]]:
    """retry_on names -> (retriable statuses, retriable failure kinds); unknown names are refused."""
    statuses: set[int] = set()
    kinds: set[str] = set()
    for name in names:
        if name == "5xx":
            statuses.update(range(500, 600))
            kinds.update(_NO_ANSWER)
        elif name == "gateway-error":
            statuses.update(_GATEWAY_ERRORS)
            kinds.update(_NO_ANSWER)
        elif name == "retriable-4xx":
            statuses.update(_RETRIABLE_4XX)
        elif name in _NO_ANSWER:
            kinds.add(name)
        elif name.isdigit() and 100 <= int(name) <= 599:
            statuses.add(int(name))
        else:
            raise ValueError(
                f"unknown retry_on {name!r}: use 5xx, gateway-error, retriable-4xx, connect-failure, "
                "reset, timeout or a status code"
            )
    return frozenset(statuses), frozenset(kinds)
