"""Builds a `CorsFilter` from its config."""

from __future__ import annotations

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins._metrics import decision_counters
from plugins.cors.config import CorsConfig
from plugins.cors.filter import DECISIONS, CorsFilter


class CorsFilterFactory:
    """The `cors` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = CorsConfig

    def __call__(self, config: CorsConfig, build: BuildContext) -> Filter:
        return CorsFilter(config, decision_counters(build.registry, CorsFilter.name, build.route, DECISIONS))
