"""Cluster settings: endpoint forms and addresses, health, outlier, retry and their limits."""

from __future__ import annotations

import pytest

from gateway.config import ClusterConfig, ConfigError, EndpointConfig, RetryConfig, load_config_text


def cluster_errors(body: str) -> list[str]:
    text = f"clusters:\n  up:\n{body}routes:\n  - backend: {{cluster: up}}\n"
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "x.yaml", env={})
    return caught.value.errors


def test_endpoint_forms() -> None:
    cluster = ClusterConfig.model_validate(
        {"endpoints": ["127.0.0.1:9101", {"address": "[::1]:9102", "weight": 3}, "Models.Internal:80"]}
    )
    first, second, third = cluster.endpoints
    assert (first.address, first.host, first.port, first.weight, first.needs_dns) == (
        "127.0.0.1:9101",
        "127.0.0.1",
        9101,
        1,
        False,
    )
    assert (second.address, second.host, second.port, second.weight) == ("[::1]:9102", "::1", 9102, 3)
    assert (third.address, third.host, third.needs_dns) == ("models.internal:80", "models.internal", True)


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("localhost", "expected host:port"),
        ("::1:80", "put IPv6 addresses in brackets"),
        ("[::1]80", "write IPv6 addresses as [::1]:9000"),
        ("127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("127.0.0.1:http", "the port must be a number from 1 to 65535"),
        ("bad_host!:80", "invalid host 'bad_host!'"),
        ("300.1.1.1:80", "invalid host '300.1.1.1'"),
    ],
)
def test_bad_addresses(address: str, problem: str) -> None:
    (error,) = cluster_errors(f"    endpoints: ['{address}']\n")
    assert error.startswith("x.yaml:3: clusters.up.endpoints[0]: invalid ")
    assert problem in error


def test_duplicate_endpoints_are_refused_even_when_written_differently() -> None:
    assert cluster_errors(
        "    endpoints:\n      - '[::1]:80'\n      - {address: '[0:0::1]:80', weight: 2}\n"
    ) == ["x.yaml:5: clusters.up.endpoints[1]: duplicate endpoint [::1]:80 (also endpoints[0])"]


def test_weights_and_thresholds_must_be_at_least_one() -> None:
    body = (
        "    endpoints: [{address: '127.0.0.1:1', weight: 0}]\n"
        "    health: {unhealthy_threshold: 0, healthy_threshold: 0}\n"
    )
    assert cluster_errors(body) == [
        "x.yaml:3: clusters.up.endpoints[0].weight: must be at least 1, got 0",
        "x.yaml:4: clusters.up.health.unhealthy_threshold: must be at least 1, got 0",
        "x.yaml:4: clusters.up.health.healthy_threshold: must be at least 1, got 0",
    ]


def test_timeouts_and_intervals_must_be_positive() -> None:
    body = (
        "    endpoints: ['127.0.0.1:1']\n"
        "    timeouts: {connect: 0s}\n"
        "    health: {timeout: 0ms}\n"
        "    outlier: {base_ejection_time: 0s}\n"
        "    dns_refresh: 0s\n"
        "    slow_start: 0s\n"
    )
    assert cluster_errors(body) == [
        "x.yaml:4: clusters.up.timeouts.connect: must be longer than zero, like 1s or 250ms",
        "x.yaml:5: clusters.up.health.timeout: must be longer than zero, like 1s or 250ms",
        "x.yaml:6: clusters.up.outlier.base_ejection_time: must be longer than zero, like 1s or 250ms",
        "x.yaml:7: clusters.up.dns_refresh: must be longer than zero, like 1s or 250ms",
    ]


def test_percentages_and_ranges() -> None:
    body = (
        "    endpoints: ['127.0.0.1:1']\n"
        "    panic_threshold: 101\n"
        "    outlier: {max_ejection_percent: -1, base_ejection_time: 10s, max_ejection_time: 5s}\n"
        "    retry: {attempts: 11, budget_percent: 150, backoff_base: 1s, backoff_max: 100ms}\n"
        "    health: {expected_statuses: []}\n"
    )
    assert cluster_errors(body) == [
        "x.yaml:4: clusters.up.panic_threshold: must be at most 100, got 101",
        "x.yaml:5: clusters.up.outlier.max_ejection_percent: must be at least 0, got -1",
        "x.yaml:6: clusters.up.retry.attempts: must be at most 10, got 11",
        "x.yaml:6: clusters.up.retry.budget_percent: must be at most 100, got 150",
        "x.yaml:7: clusters.up.health.expected_statuses: needs at least 1 item",
    ]
    ordered = cluster_errors(
        "    endpoints: ['127.0.0.1:1']\n"
        "    outlier: {base_ejection_time: 10s, max_ejection_time: 5s}\n"
        "    retry: {backoff_base: 1s, backoff_max: 100ms}\n"
    )
    assert ordered == [
        "x.yaml:4: clusters.up.outlier.max_ejection_time: must be at least base_ejection_time",
        "x.yaml:5: clusters.up.retry.backoff_max: must be at least backoff_base",
    ]


def test_retry_conditions_accept_numbers_and_text() -> None:
    assert RetryConfig.model_validate({"on": [502, "503", "connect_failure", 502]}).on == (
        "502",
        "503",
        "connect_failure",
    )
    assert RetryConfig().on == ("connect_failure", "reset", "502", "503", "504")
    (error,) = cluster_errors("    endpoints: ['127.0.0.1:1']\n    retry:\n      on: [connect_failur, 503]\n")
    assert error == (
        "x.yaml:5: clusters.up.retry.on[0]: must be one of connect_failure, reset, 502, 503, 504; "
        "got 'connect_failur' (did you mean 'connect_failure'?)"
    )


def test_booleans_are_not_numbers() -> None:
    assert cluster_errors("    endpoints: ['127.0.0.1:1']\n    max_connections_per_endpoint: yes\n") == [
        "x.yaml:4: clusters.up.max_connections_per_endpoint: expected a number, got true"
    ]


def test_defaults() -> None:
    cluster = ClusterConfig(endpoints=(EndpointConfig(address="127.0.0.1:1"),))
    assert cluster.protocol == "http"
    assert cluster.health is None
    assert (cluster.outlier.consecutive_failures, cluster.outlier.max_ejection_percent) == (5, 50.0)
    assert (cluster.timeouts.connect, cluster.timeouts.request, cluster.timeouts.idle) == (1.0, 30.0, 60.0)
    assert (cluster.retry.attempts, cluster.retry.backoff_base, cluster.retry.backoff_max) == (1, 0.025, 0.25)
    assert (cluster.circuit_breaker.max_concurrent, cluster.circuit_breaker.max_pending) == (1024, 1024)
    assert (cluster.panic_threshold, cluster.slow_start, cluster.dns_refresh) == (50.0, 0.0, 30.0)


def test_models_are_frozen() -> None:
    cluster = ClusterConfig(endpoints=(EndpointConfig(address="127.0.0.1:1"),))
    with pytest.raises(ValueError, match="frozen"):
        cluster.protocol = "openai"
