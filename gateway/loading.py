"""Loading the gateway's config with every check the composed gateway knows (plugins included)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from experiments.config import experiment_clusters
from gateway.config import GatewayConfig, load_config
from gateway.config.models.gateway import unknown_cluster_message
from gateway.config.suggest import closest
from gateway.filters_config import check_filters

Issue = tuple[tuple[str | int, ...], str]


def check_experiments(config: GatewayConfig) -> Iterable[Issue]:
    """Routes name defined experiments, and experiments name defined clusters."""
    known = list(config.experiments)
    for i, route in enumerate(config.routes):
        name = route.backend.experiment
        if name is not None and name not in config.experiments:
            hint = closest(name, known)
            suggestion = f" (did you mean {hint!r}?)" if hint else ""
            listed = ", ".join(sorted(known)) or "none defined"
            yield (
                ("routes", i, "backend", "experiment"),
                f"unknown experiment {name!r}{suggestion} (known: {listed})",
            )
    clusters = list(config.clusters)
    for name, experiment in config.experiments.items():
        for cluster in experiment_clusters(experiment):
            if cluster not in config.clusters:
                yield ("experiments", name), unknown_cluster_message(cluster, clusters)


def load_gateway_config(path: Path | str) -> GatewayConfig:
    """Load and validate a config file, filter options and experiments included; raises ConfigError."""
    return load_config(path, checks=(check_filters, check_experiments))
