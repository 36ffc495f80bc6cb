"""Builds a cache filter from its config: the key builder, the store and the metrics, once."""

from __future__ import annotations

import logging

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._redis import RedisGuard
from plugins.cache.config import CacheConfig
from plugins.cache.filter import CacheFilter, CacheStore
from plugins.cache.keys import CacheKeyBuilder
from plugins.cache.memory_store import MemoryCacheStore
from plugins.cache.metrics import FILTER_NAME, CacheMetrics
from plugins.cache.redis_store import RedisCacheStore

_log = logging.getLogger("turnout.cache")


class CacheFilterFactory:
    """The `cache` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = CacheConfig

    def __call__(self, config: CacheConfig, build: BuildContext) -> Filter:
        metrics = CacheMetrics(build.registry, build.route)
        store: CacheStore
        if config.backend == "memory":
            store = MemoryCacheStore(
                ttl=config.ttl,
                max_entries=config.max_entries,
                max_bytes=config.max_bytes,
                evictions=metrics.evictions,
            )
        else:
            url = config.redis_url or build.redis_url
            if url is None:
                raise ValueError(
                    "backend redis needs a Redis: set `redis_url` here, "
                    "or `state: {backend: redis, url: ...}`"
                )
            guard = RedisGuard(
                url,
                timeout=config.redis_timeout,
                retry_interval=config.redis_retry_interval,
                what=f"{FILTER_NAME} on route {build.route!r}",
                log=_log,
                errors=metrics.redis_errors,
            )
            store = RedisCacheStore(
                guard, prefix=f"{config.key_prefix}{build.route}:", ttl=config.ttl, max_bytes=config.max_bytes
            )
        return CacheFilter(
            store,
            CacheKeyBuilder(
                build.route,
                config.vary_headers,
                by_principal="principal" in config.vary_on,
                canonical_json=config.canonical_json,
                in_process=config.backend == "memory",  # its keys never leave this process
            ),
            metrics,
            methods=config.methods,
            coalesce=config.coalesce,
            coalesce_timeout=config.coalesce_timeout,
            vary_on=config.vary_on,
            shared_cookies=config.shared_cookies,
            store_streams=config.store_streams,
            store_sampled=config.store_sampled,
        )
