"""The rate-limit filter's counters, with every label child resolved when the filter is built."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter

from plugins._metrics import counter, decision_counters

FILTER_NAME = "rate_limit"
DECISIONS = ("allow", "limited", "too_costly", "unavailable")
"""Request-level outcomes in turnout_filter_decisions_total (too_costly: a cost above a burst;
unavailable: Redis failed under fail_closed)."""


class RateLimitMetrics:
    """Per limit: admitted and limited decisions; per route: Redis errors and fallback decisions."""

    __slots__ = ("allowed", "decisions", "fallbacks", "limited", "redis_errors")

    def __init__(
        self, registry: CollectorRegistry | None, route: str, limit_names: Sequence[str], policy: str
    ) -> None:
        per_limit = counter(
            registry,
            "turnout_rate_limit_decisions_total",
            "Rate-limit decisions per limit: allowed (the request passed) or limited (this limit refused it)",
            ("route", "limit", "decision"),
        )
        self.allowed: tuple[Counter, ...] = tuple(per_limit.labels(route, n, "allowed") for n in limit_names)
        self.limited: tuple[Counter, ...] = tuple(per_limit.labels(route, n, "limited") for n in limit_names)
        self.decisions = decision_counters(registry, FILTER_NAME, route, DECISIONS)
        self.redis_errors = counter(
            registry,
            "turnout_rate_limit_redis_errors_total",
            "Redis calls of the rate limiter that failed or exceeded their time budget",
            ("route",),
        ).labels(route)
        self.fallbacks = counter(
            registry,
            "turnout_rate_limit_fallback_decisions_total",
            "Rate-limit decisions taken without Redis, by the on_redis_failure policy",
            ("route", "policy"),
        ).labels(route, policy)
