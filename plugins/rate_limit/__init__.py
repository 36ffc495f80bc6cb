"""`rate_limit`: GCRA limits per principal, tenant, route, model, client IP or header, in this
process or shared through Redis."""

from gateway.core.filters import FilterFactory
from plugins.rate_limit.config import LimitConfig, RateLimitConfig
from plugins.rate_limit.factory import RateLimitFilterFactory
from plugins.rate_limit.filter import MemoryRateLimitFilter, RateLimitFilter, RedisRateLimitFilter

FACTORY: FilterFactory = RateLimitFilterFactory()

__all__ = [
    "FACTORY",
    "LimitConfig",
    "MemoryRateLimitFilter",
    "RateLimitConfig",
    "RateLimitFilter",
    "RateLimitFilterFactory",
    "RedisRateLimitFilter",
]
