"""Filters in the config: validated at load (with file:line errors) and built into route chains."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.config import GatewayConfig, RouteConfig
from gateway.config.explain import explain_validation_error
from gateway.core.filters import BuildContext, Filter
from gateway.filter_chain import FilterChain, FilterTimer
from plugins import FACTORIES
from plugins.registry import resolve_factory

Issue = tuple[tuple[str | int, ...], str]


def check_filters(config: GatewayConfig) -> Iterable[Issue]:
    """Every route's filters name a known factory and give it valid options."""
    for i, route in enumerate(config.routes):
        for j, spec in enumerate(route.filters):
            where: tuple[str | int, ...] = ("routes", i, "filters", j)
            try:
                factory = resolve_factory(spec.name, FACTORIES)
            except ValueError as exc:
                yield where, str(exc)
                continue
            try:
                factory.config_model.model_validate(spec.config)
            except ValidationError as exc:
                yield from explain_validation_error(
                    exc, model=factory.config_model, data=spec.config, prefix=(*where, spec.config_key)
                )


def build_filters(
    route: RouteConfig,
    cluster: str,
    registry: CollectorRegistry,
    base_dir: Path,
    redis_url: str | None,
    timer: FilterTimer,
) -> FilterChain:
    """The route's filter chain (the config was checked at load, so building does not fail on it)."""
    build = BuildContext(
        route=route.name, cluster=cluster, registry=registry, redis_url=redis_url, base_dir=str(base_dir)
    )
    filters: list[Filter] = []
    for spec in route.filters:
        factory = resolve_factory(spec.name, FACTORIES)
        filter_ = factory(factory.config_model.model_validate(spec.config), build)
        filter_.name = spec.name if not spec.is_import_path else spec.name.rpartition(":")[2]
        filters.append(filter_)
    return FilterChain(filters, route.name, timer)
