"""Whole-file rules: listeners, the admin token, port clashes, cluster names, and the summary line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import AdminConfig, ConfigError, GatewayConfig, ListenConfig, load_config_text, summarize

ROUTES = "routes:\n  - backend: {cluster: up}\n"
CLUSTERS = "clusters:\n  up: {endpoints: [127.0.0.1:9101]}\n"


def errors_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "x.yaml", env={})
    return caught.value.errors


def test_listener_defaults() -> None:
    listen = ListenConfig()
    assert (listen.host, listen.port, listen.backlog) == ("127.0.0.1", 8080, 1024)
    assert (listen.max_header_bytes, listen.max_headers, listen.max_body_bytes) == (
        65536,
        100,
        10 * 1024 * 1024,
    )
    assert (listen.header_timeout, listen.idle_timeout, listen.drain_timeout) == (10.0, 60.0, 30.0)
    admin = AdminConfig()
    assert (admin.host, admin.port, admin.token) == ("127.0.0.1", 9901, "")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_admin_on_loopback_needs_no_token(host: str) -> None:
    assert AdminConfig(host=host).token == ""


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "admin.internal"])
def test_admin_elsewhere_needs_a_token(host: str) -> None:
    with pytest.raises(ValidationError, match="set a bearer token"):
        AdminConfig(host=host)
    assert AdminConfig(host=host, token="s3cret").token == "s3cret"


def test_admin_token_error_points_at_the_token() -> None:
    assert errors_of("admin:\n  host: 0.0.0.0\n  port: 9901\n" + CLUSTERS + ROUTES) == [
        "x.yaml:1: admin.token: required when the admin listener binds 0.0.0.0, which other machines can "
        "reach: set a bearer token, e.g. token: ${TURNOUT_ADMIN_TOKEN}"
    ]


@pytest.mark.parametrize(
    ("listen", "admin"),
    [
        ("{port: 9000}", "{port: 9000}"),
        ("{host: 0.0.0.0, port: 9000}", "{host: 127.0.0.1, port: 9000}"),
        ("{port: 9901}", "{}"),
    ],
)
def test_admin_and_listen_ports_must_differ_on_the_same_address(listen: str, admin: str) -> None:
    text = f"listen: {listen}\nadmin: {admin}\n" + CLUSTERS + ROUTES
    (error,) = errors_of(text)
    assert error.startswith("x.yaml:2: admin")
    assert "is also listen.port on the same address: give the admin listener its own port" in error


def test_same_port_on_different_addresses_is_fine() -> None:
    config = load_config_text(
        "listen: {host: 127.0.0.1, port: 9000}\nadmin: {host: 127.0.0.2, port: 9000}\n" + CLUSTERS + ROUTES,
        "x.yaml",
        env={},
    )
    assert config.admin.port == config.listen.port == 9000


def test_listen_host_and_port_are_checked() -> None:
    assert errors_of("listen: {host: 'not a host', port: 0}\n" + CLUSTERS + ROUTES) == [
        "x.yaml:1: listen.host: invalid host 'not a host': use an IP address (127.0.0.1, ::1) or a DNS name",
        "x.yaml:1: listen.port: must be at least 1, got 0",
    ]


def test_cluster_names_are_checked() -> None:
    text = "clusters:\n  up: {endpoints: [127.0.0.1:1]}\n  -bad: {endpoints: [127.0.0.1:2]}\n" + ROUTES
    assert errors_of(text) == [
        "x.yaml:3: clusters.-bad: invalid name '-bad': use letters, digits, '_', '.' and '-', starting with "
        "a letter or digit"
    ]


def test_cluster_references_are_checked_for_models_built_in_python() -> None:
    with pytest.raises(ValidationError, match="unknown cluster 'down' \\(known: up\\)"):
        GatewayConfig.model_validate(
            {"clusters": {"up": {"endpoints": ["127.0.0.1:1"]}}, "routes": [{"backend": {"cluster": "down"}}]}
        )


@pytest.mark.parametrize(
    ("text", "summary"),
    [
        (
            CLUSTERS + ROUTES,
            "ok: 1 route, 1 cluster (1 endpoint), listening on 127.0.0.1:8080, admin on 127.0.0.1:9901",
        ),
        (
            "listen: {host: '::', port: 80}\nadmin: {host: '::1', port: 81}\n"
            "clusters:\n  a: {endpoints: ['127.0.0.1:1', '127.0.0.1:2']}\n  b: {endpoints: ['127.0.0.1:3']}\n"
            "routes:\n  - backend: {cluster: a}\n  - backend: {cluster: b}\n",
            "ok: 2 routes, 2 clusters (3 endpoints), listening on [::]:80, admin on [::1]:81",
        ),
    ],
)
def test_summary(text: str, summary: str) -> None:
    assert summarize(load_config_text(text, "x.yaml", env={})) == summary
