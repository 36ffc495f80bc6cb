"""The cache filter's counters, with every label child resolved when the filter is built."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from plugins._metrics import counter

FILTER_NAME = "cache"
LOOKUP_RESULTS = ("hit", "miss", "coalesced", "bypass", "private")
EVICTION_REASONS = ("capacity", "expired", "invalidated")


class CacheMetrics:
    __slots__ = ("evictions", "lookups", "redis_errors", "stores")

    def __init__(self, registry: CollectorRegistry | None, route: str) -> None:
        lookups = counter(
            registry,
            "turnout_cache_lookups_total",
            "Cacheable requests by outcome: hit, miss, coalesced (shared an identical request's "
            "answer), bypass (Cache-Control: no-store) or private (a caller's credentials and no "
            "answer that allows sharing: went upstream, not stored)",
            ("route", "result"),
        )
        self.lookups = {result: lookups.labels(route, result) for result in LOOKUP_RESULTS}
        self.stores = counter(
            registry, "turnout_cache_stores_total", "Answers stored in the cache", ("route",)
        ).labels(route)
        evictions = counter(
            registry,
            "turnout_cache_evictions_total",
            "Entries dropped from the in-process cache, by reason",
            ("route", "reason"),
        )
        self.evictions = {reason: evictions.labels(route, reason) for reason in EVICTION_REASONS}
        self.redis_errors = counter(
            registry,
            "turnout_cache_redis_errors_total",
            "Cache lookups and stores in Redis that failed or exceeded their time budget",
            ("route",),
        ).labels(route)
