"""Filters in the config: validated at load (with file:line errors) and built into route chains.

A filter is checked in two steps, both located at its place in the file: its name must lead to a
factory and its options must satisfy the factory's `config_model` (`check_filters`); then the factory
must build it (`build_filter`), which is where a factory refuses options that need the rest of the
gateway (a Redis backend with no Redis URL) or a file (a keys file that does not load). The load-time
preflight calls `build_filter` too, so what `turnout validate` accepts, `turnout run` builds.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.config import FilterSpec, GatewayConfig, RouteConfig
from gateway.config.errors import BuildError, describe_exception
from gateway.config.explain import explain_validation_error
from gateway.config.paths import Issue
from gateway.config.paths import Path as FieldPath
from gateway.core.filters import BuildContext, Filter, FilterFactory
from gateway.filter_chain import FilterChain, FilterTimer
from gateway.tracing import Tracing
from plugins import FACTORIES
from plugins.registry import resolve_factory


def filter_path(route_index: int, filter_index: int) -> FieldPath:
    """Where filter `filter_index` of route `route_index` sits in the file."""
    return ("routes", route_index, "filters", filter_index)


def _name_path(where: FieldPath, spec: FilterSpec) -> FieldPath:
    """An import path's problems point at its `plugin:` line; a built-in's at its entry."""
    return (*where, "plugin") if spec.is_import_path else where


def check_filters(config: GatewayConfig) -> Iterable[Issue]:
    """Every route's filters name a known factory and give it valid options."""
    for i, route in enumerate(config.routes):
        for j, spec in enumerate(route.filters):
            where = filter_path(i, j)
            try:
                factory = resolve_factory(spec.name, FACTORIES)
            except ValueError as exc:
                yield _name_path(where, spec), str(exc)
                continue
            try:
                factory.config_model.model_validate(spec.config)
            except ValidationError as exc:
                yield from explain_validation_error(
                    exc, model=factory.config_model, data=spec.config, prefix=(*where, spec.config_key)
                )
            except Exception as exc:  # a third-party model's validator may raise anything
                yield (*where, spec.config_key), f"the options do not validate: {describe_exception(exc)}"


def build_filter(spec: FilterSpec, build: BuildContext, where: FieldPath) -> Filter:
    """One filter from its spec; BuildError, located at the filter, when it cannot be built."""
    try:
        factory: FilterFactory = resolve_factory(spec.name, FACTORIES)
    except ValueError as exc:
        raise BuildError(_name_path(where, spec), str(exc)) from None
    try:
        filter_ = factory(factory.config_model.model_validate(spec.config), build)
    except Exception as exc:
        # Any exception: a factory is third-party code as often as not, and whatever it raises, the
        # config entry that called it is what the operator can fix.
        reason = describe_exception(exc)
        message = reason if type(exc) is ValueError else f"the factory raised {reason}"
        raise BuildError((*where, spec.config_key), message) from exc
    if not isinstance(filter_, Filter):
        raise BuildError(
            _name_path(where, spec),
            f"the factory returned {type(filter_).__name__}, not a filter (gateway.core.filters.Filter)",
        )
    try:
        filter_.name = spec.name  # its key or its plugin path; the chain numbers a repeated name
    except AttributeError as exc:  # a filter class with __slots__ and no `name` slot
        raise BuildError(_name_path(where, spec), f"the filter cannot be named: {exc}") from exc
    return filter_


def build_filters(
    route: RouteConfig,
    route_index: int,
    cluster: str,
    registry: CollectorRegistry,
    base_dir: Path,
    redis_url: str | None,
    timer: FilterTimer,
    tracing: Tracing | None = None,
) -> FilterChain:
    """The route's filter chain, with the tracing hook when tracing is on; BuildError (located at
    the filter) when one cannot be built."""
    build = BuildContext(
        route=route.name, cluster=cluster, registry=registry, redis_url=redis_url, base_dir=str(base_dir)
    )
    filters = [build_filter(spec, build, filter_path(route_index, j)) for j, spec in enumerate(route.filters)]
    return FilterChain(filters, route.name, timer, tracing.filter if tracing is not None else None)
