"""`cache`: answer repeated identical inference requests from a cache (in process or in Redis) and
merge concurrent identical ones into one upstream call."""

from gateway.core.filters import FilterFactory
from plugins.cache.config import CacheConfig
from plugins.cache.factory import CacheFilterFactory
from plugins.cache.filter import CacheFilter

FACTORY: FilterFactory = CacheFilterFactory()

__all__ = ["FACTORY", "CacheConfig", "CacheFilter", "CacheFilterFactory"]
