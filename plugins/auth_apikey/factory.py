"""Builds an `ApiKeyFilter` from its config, reading the keys file (if any) once, at build time."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._metrics import decision_counters
from plugins.auth_apikey.config import ApiKeyConfig
from plugins.auth_apikey.filter import DECISIONS, ApiKeyFilter
from plugins.auth_apikey.keystore import ApiKeyStore, load_keys_file


class ApiKeyFilterFactory:
    """The `auth_apikey` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = ApiKeyConfig

    def __call__(self, config: ApiKeyConfig, build: BuildContext) -> Filter:
        entries = list(config.keys)
        if config.keys_file is not None:
            entries.extend(load_keys_file(Path(build.base_dir) / config.keys_file))
        store = ApiKeyStore(entries)
        if not len(store):
            raise ValueError("auth_apikey has no keys: `keys` and `keys_file` are both empty")
        return ApiKeyFilter(
            store,
            config.sources,
            optional=config.optional,
            forward_credentials=config.forward_credentials,
            realm=config.realm,
            counters=decision_counters(build.registry, ApiKeyFilter.name, build.route, DECISIONS),
            keys_from_config_only=config.keys_file is None,
        )
