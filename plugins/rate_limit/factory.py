"""Builds a rate-limit filter from its config: limits compiled once, the backend chosen once."""

from __future__ import annotations

import logging
from pathlib import Path

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._redis import RedisGuard
from plugins.rate_limit.config import RateLimitConfig
from plugins.rate_limit.costs import COSTS
from plugins.rate_limit.filter import (
    Limit,
    MemoryRateLimitBodyFilter,
    MemoryRateLimitFilter,
    RedisRateLimitBodyFilter,
    RedisRateLimitFilter,
)
from plugins.rate_limit.gcra import GcraLimit
from plugins.rate_limit.headers import policy_item
from plugins.rate_limit.keys import key_reader
from plugins.rate_limit.metrics import FILTER_NAME, RateLimitMetrics
from plugins.rate_limit.tokenizer_cost import tokenizer_cost

_log = logging.getLogger("turnout.rate_limit")


class RateLimitFilterFactory:
    """The `rate_limit` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = RateLimitConfig

    def __call__(self, config: RateLimitConfig, build: BuildContext) -> Filter:
        limits = tuple(
            Limit(
                name=limit.policy_name,
                read_key=key_reader(limit.key),
                cost=tokenizer_cost(Path(build.base_dir) / limit.tokenizer)
                if limit.tokenizer is not None and limit.cost == "tokens"
                else COSTS[limit.cost],
                settles=limit.cost == "tokens",
                gcra=GcraLimit.of(limit.rate.count, limit.rate.period, limit.effective_burst),
                description=f"rate limit '{limit.policy_name}' ({limit.rate}, burst {limit.effective_burst})",
            )
            for limit in config.limits
        )
        policy = ", ".join(policy_item(limit.policy_name, limit.rate) for limit in config.limits)
        metrics = RateLimitMetrics(
            build.registry, build.route, [limit.name for limit in limits], config.on_redis_failure
        )
        reads_body = any(limit.cost != "one" for limit in config.limits)
        if config.backend == "memory":
            memory_class = MemoryRateLimitBodyFilter if reads_body else MemoryRateLimitFilter
            return memory_class(limits, policy, metrics)
        url = config.redis_url or build.redis_url
        if url is None:
            raise ValueError(
                "backend redis needs a Redis: set `redis_url` here, or `state: {backend: redis, url: ...}`"
            )
        guard = RedisGuard(
            url,
            timeout=config.redis_timeout,
            retry_interval=config.redis_retry_interval,
            what=f"{FILTER_NAME} on route {build.route!r}",
            log=_log,
            errors=metrics.redis_errors,
        )
        redis_class = RedisRateLimitBodyFilter if reads_body else RedisRateLimitFilter
        return redis_class(
            limits,
            policy,
            metrics,
            guard=guard,
            key_prefixes=tuple(f"{config.key_prefix}{build.route}:{limit.name}:" for limit in limits),
            on_failure=config.on_redis_failure,
            retry_interval=config.redis_retry_interval,
        )
