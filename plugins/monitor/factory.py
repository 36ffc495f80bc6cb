"""Builds a monitor filter: its sample counters, and the registry's shared collector."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from gateway.core.filters import BuildContext, Filter
from plugins.monitor.config import MonitorConfig
from plugins.monitor.filter import MonitorFilter
from plugins.monitor.metrics import collector_for, sample_counters


class MonitorFilterFactory:
    """The `monitor` filter factory."""

    __slots__ = ()
    config_model: type[BaseModel] = MonitorConfig

    def __call__(self, config: MonitorConfig, build: BuildContext) -> Filter:
        return MonitorFilter(
            config,
            Path(build.base_dir),
            sample_counters(build.registry, build.route),
            collector_for(build.registry),
        )
