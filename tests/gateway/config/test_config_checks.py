"""Checks added by later stages: each (path, message) they yield is pinned to its line."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from gateway.config import ConfigError, GatewayConfig, Issue, load_config, load_config_text

CONFIG = """\
clusters:
  up: {endpoints: [127.0.0.1:9101]}
routes:
  - name: scored
    backend: {cluster: up}
    filters:
      - cors
      - rate_limit:
          limits:
            - {key: principal, rate: fast}
      - plugin: acme.filters:Audit
        config:
          sink: nowhere
"""


def rate_limit_check(config: GatewayConfig) -> Iterable[Issue]:
    """Like a plugin's check: reads the raw filter options and reports problems by path."""
    for route_index, route in enumerate(config.routes):
        for filter_index, spec in enumerate(route.filters):
            base = ("routes", route_index, "filters", filter_index, spec.config_key)
            if spec.name == "rate_limit":
                for limit_index, limit in enumerate(spec.config["limits"]):
                    if limit["rate"] == "fast":
                        yield (
                            (*base, "limits", limit_index, "rate"),
                            "invalid rate 'fast': use a count per unit",
                        )
            if spec.is_import_path and "sink" in spec.config:
                yield (*base, "sink"), f"unknown sink {spec.config['sink']!r}"
                yield (*base, "format"), "required field is missing"


def test_checks_pass_when_they_find_nothing() -> None:
    def no_problem(config: GatewayConfig) -> Iterable[Issue]:
        return []

    config = load_config_text(CONFIG, "x.yaml", env={}, checks=[no_problem])
    assert [spec.name for spec in config.routes[0].filters] == ["cors", "rate_limit", "acme.filters:Audit"]


def test_check_paths_map_to_lines() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text(CONFIG, "x.yaml", env={}, checks=[rate_limit_check])
    assert caught.value.errors == [
        "x.yaml:10: routes[0].filters[1].rate_limit.limits[0].rate: invalid rate 'fast': use a count "
        "per unit",
        # A path the file does not contain is reported at the mapping it belongs in.
        "x.yaml:12: routes[0].filters[2].config.format: required field is missing",
        "x.yaml:13: routes[0].filters[2].config.sink: unknown sink 'nowhere'",
    ]


def test_several_checks_all_report_in_file_order() -> None:
    def route_names(config: GatewayConfig) -> Iterable[Issue]:
        yield ("routes", 0, "name"), "reserved route name"

    with pytest.raises(ConfigError) as caught:
        load_config_text(CONFIG, "x.yaml", env={}, checks=[rate_limit_check, route_names])
    assert [line.split(":")[1] for line in caught.value.errors] == ["4", "10", "12", "13"]


def test_checks_run_only_on_a_valid_config() -> None:
    calls: list[GatewayConfig] = []

    def record(config: GatewayConfig) -> Iterable[Issue]:
        calls.append(config)
        return []

    with pytest.raises(ConfigError):
        load_config_text(CONFIG.replace("cluster: up", "cluster: down"), "x.yaml", env={}, checks=[record])
    assert calls == []


def test_load_config_takes_checks_too(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={}, checks=[rate_limit_check])
    assert caught.value.errors[0].startswith(f"{path}:10: ")
