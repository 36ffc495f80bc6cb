"""Filters chosen per route by name: the explicit map from a name to its factory.

Each built-in filter is a folder (`plugins/<name>/`) exporting `FACTORY`; adding one means adding
a line here, never registering by import side effect. Third-party filters are named in the config by
import path (`plugin: mypkg.filters:TenantHeader`) and built through the same factory shape.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.core.filters import FilterFactory
from plugins import (
    auth_apikey,
    auth_jwt,
    authz,
    batching,
    cache,
    cors,
    monitor,
    rate_limit,
    transform,
    validate,
)

FACTORIES: Mapping[str, FilterFactory] = {
    "auth_apikey": auth_apikey.FACTORY,
    "auth_jwt": auth_jwt.FACTORY,
    "authz": authz.FACTORY,
    "batching": batching.FACTORY,
    "cache": cache.FACTORY,
    "cors": cors.FACTORY,
    "monitor": monitor.FACTORY,
    "rate_limit": rate_limit.FACTORY,
    "transform": transform.FACTORY,
    "validate": validate.FACTORY,
}
