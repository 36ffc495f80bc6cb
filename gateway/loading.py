"""Loading the gateway's config with every check the composed gateway knows: filter options,
experiment names, and the preflight build of everything `turnout run` builds."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from experiments.config import experiment_clusters
from gateway.config import ConfigCheck, GatewayConfig, load_config, load_config_text
from gateway.config.models.gateway import unknown_cluster_message
from gateway.config.suggest import closest
from gateway.filters_config import check_filters
from gateway.preflight import preflight

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


def gateway_checks(base_dir: Path, *, build: bool = True) -> ConfigCheck:
    """The checks of the composed gateway for a config file in `base_dir`. The preflight build runs
    (unless `build` is False) only on a config that passed the others: building from unknown names
    or invalid filter options would only repeat their errors less clearly."""

    def check(config: GatewayConfig) -> Iterable[Issue]:
        issues = [*check_filters(config), *check_experiments(config)]
        return issues or (preflight(config, base_dir) if build else [])

    return check


def load_gateway_config(path: Path | str, *, build: bool = True) -> GatewayConfig:
    """Load and validate a config file, filter options and experiments included, and build (without
    starting) everything the gateway builds from it; raises ConfigError listing every problem.

    `build=False` skips the build, for tools that only read the config (`turnout report` on another
    machine need not have the gateway's certificates or keys files)."""
    return load_config(path, checks=(gateway_checks(Path(path).parent, build=build),))


def load_gateway_config_text(
    text: str, filename: str, base_dir: Path, *, env: Mapping[str, str] | None = None
) -> GatewayConfig:
    """`load_gateway_config` for config text; `filename` names it in errors, files it names are
    relative to `base_dir`, and ${VAR}s come from `env` (default: the environment)."""
    return load_config_text(
        text, filename, env=os.environ if env is None else env, checks=(gateway_checks(base_dir),)
    )
