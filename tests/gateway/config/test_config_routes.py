"""Routes: default names, match conditions, rewrites, header edits and the filter list."""

from __future__ import annotations

import pytest

from gateway.config import (
    ConfigError,
    FilterSpec,
    GatewayConfig,
    HeaderMatch,
    MatchConfig,
    RouteConfig,
    load_config_text,
)

CLUSTERS = "clusters:\n  up: {endpoints: [127.0.0.1:9101]}\nroutes:\n"


def routes_of(body: str) -> tuple[RouteConfig, ...]:
    return load_config_text(CLUSTERS + body, "x.yaml", env={}).routes


def route_errors(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(CLUSTERS + body, "x.yaml", env={})
    return caught.value.errors


def test_routes_without_names_are_numbered_from_zero() -> None:
    routes = routes_of(
        "  - backend: {cluster: up}\n  - {name: api, backend: {cluster: up}}\n  - backend: {cluster: up}\n"
    )
    assert [route.name for route in routes] == ["route-0", "api", "route-2"]


def test_route_names_are_checked() -> None:
    assert route_errors("  - {name: 'my route', backend: {cluster: up}}\n") == [
        "x.yaml:4: routes[0].name: invalid name 'my route': use letters, digits, '_', '.' and '-', "
        "starting with a letter or digit"
    ]


def test_match_conditions_are_normalized() -> None:
    (route,) = routes_of(
        "  - match:\n"
        "      regex: '^/v[0-9]+/'\n"
        "      methods: [get, Post]\n"
        "      host: '*.Example.com'\n"
        "      headers:\n"
        "        X-Tenant: acme\n"
        "        x-shard: 7\n"
        "        x-debug: {present: false}\n"
        "        x-user: {regex: '^u-'}\n"
        "      model: risk\n"
        "      version: 1\n"
        "    backend: {cluster: up}\n"
    )
    match = route.match
    assert match.regex is not None and match.regex.search("/v2/models")
    assert match.methods == ("GET", "POST")
    assert match.host == "*.example.com"
    assert match.headers["x-tenant"] == HeaderMatch(exact="acme")
    assert match.headers["x-shard"] == HeaderMatch(exact="7")
    assert match.headers["x-debug"] == HeaderMatch(present=False)
    user = match.headers["x-user"].regex
    assert user is not None and user.pattern == "^u-"
    assert (match.model, match.version) == ("risk", "1")


def test_an_empty_match_takes_everything() -> None:
    (route,) = routes_of("  - backend: {cluster: up}\n")
    assert route.match == MatchConfig()
    assert route.filters == ()
    assert (route.rewrite, route.retry, route.timeout) == (None, None, None)


def test_match_errors() -> None:
    body = (
        "  - match:\n"
        "      path: /exact\n"
        "      prefix: /v2/\n"
        "      regex: '^/'\n"
        "      methods: [FETCH]\n"
        "      host: 'example.com:8080'\n"
        "      headers: {x-a: {exact: a, present: true}, x-b: {}}\n"
        "    backend: {cluster: up}\n"
        "  - match: {prefix: v2/}\n"
        "    backend: {cluster: up}\n"
    )
    assert route_errors(body) == [
        "x.yaml:8: routes[0].match.methods[0]: must be one of GET, HEAD, POST, PUT, DELETE, CONNECT, "
        "OPTIONS, TRACE, PATCH; got 'FETCH' (did you mean 'PATCH'?)",
        "x.yaml:9: routes[0].match.host: invalid host 'example.com:8080': use a name like example.com or "
        "*.example.com, without a port",
        "x.yaml:10: routes[0].match.headers.x-a: give exactly one of exact, regex or present "
        "(found exact, present)",
        "x.yaml:10: routes[0].match.headers.x-b: give exactly one of exact, regex or present",
        "x.yaml:12: routes[1].match.prefix: invalid path 'v2/': a path starts with '/' and has no spaces",
    ]


def test_only_one_path_condition() -> None:
    body = (
        "  - match:\n      path: /exact\n      prefix: /v2/\n      regex: '^/'\n    backend: {cluster: up}\n"
    )
    assert route_errors(body) == [
        "x.yaml:6: routes[0].match.prefix: use only one of path, prefix and regex (this match also has path)",
        "x.yaml:7: routes[0].match.regex: use only one of path, prefix and regex (this match also has path)",
    ]


def test_rewrite_needs_a_prefix_match() -> None:
    (route,) = routes_of(
        "  - match: {prefix: /old/}\n    rewrite: {prefix: /new/}\n    backend: {cluster: up}\n"
    )
    assert route.rewrite is not None and route.rewrite.prefix == "/new/"
    assert route_errors(
        "  - match: {path: /old}\n    rewrite:\n      prefix: /new/\n    backend: {cluster: up}\n"
    ) == [
        "x.yaml:6: routes[0].rewrite.prefix: rewrite.prefix replaces match.prefix, but this route's match "
        "has no prefix"
    ]


def test_header_edits_lower_case_names() -> None:
    (route,) = routes_of(
        "  - request_headers: {add: {X-Gateway: turnout, x-build: 42}, remove: [Cookie]}\n"
        "    backend: {cluster: up}\n"
    )
    assert route.request_headers.add == {"x-gateway": "turnout", "x-build": "42"}
    assert route.request_headers.remove == ("cookie",)
    assert route_errors("  - response_headers: {remove: ['bad header']}\n    backend: {cluster: up}\n") == [
        "x.yaml:4: routes[0].response_headers.remove[0]: invalid header name 'bad header': use letters, "
        "digits and '-'"
    ]


def test_route_overrides() -> None:
    (route,) = routes_of("  - backend: {cluster: up}\n    retry: {attempts: 0}\n    timeout: 5s\n")
    assert route.retry is not None and route.retry.attempts == 0
    assert route.timeout == 5.0
    assert route_errors("  - backend: {cluster: up}\n    timeout: 0s\n") == [
        "x.yaml:5: routes[0].timeout: must be longer than zero, like 1s or 250ms"
    ]


def test_filter_forms() -> None:
    (route,) = routes_of(
        "  - backend: {cluster: up}\n"
        "    filters:\n"
        "      - cors\n"
        "      - auth_apikey:\n"
        "      - rate_limit: {limits: [{key: principal, rate: 100/s}]}\n"
        "      - {plugin: 'acme.filters:Audit', config: {sink: stdout}}\n"
        "      - plugin: acme.filters:Bare\n"
    )
    assert route.filters == (
        FilterSpec(name="cors", config={}),
        FilterSpec(name="auth_apikey", config={}),
        FilterSpec(name="rate_limit", config={"limits": [{"key": "principal", "rate": "100/s"}]}),
        FilterSpec(name="acme.filters:Audit", config={"sink": "stdout"}),
        FilterSpec(name="acme.filters:Bare", config={}),
    )
    assert [spec.config_key for spec in route.filters] == [
        "cors",
        "auth_apikey",
        "rate_limit",
        "config",
        "config",
    ]
    assert [spec.is_import_path for spec in route.filters] == [False, False, False, True, True]


def test_filter_errors_point_into_the_entry() -> None:
    body = (
        "  - backend: {cluster: up}\n"
        "    filters:\n"
        "      - Rate-Limit: {}\n"
        "      - rate_limit: [100/s]\n"
        "      - {cors: {}, cache: {}}\n"
        "      - {plugin: not-an-import-path}\n"
        "      - {plugin: 'a.b:C', options: {}, confg: {}}\n"
        "      - 42\n"
    )
    assert route_errors(body) == [
        "x.yaml:6: routes[0].filters[0].Rate-Limit: invalid filter name 'Rate-Limit': use lower-case "
        "letters, digits and '_'",
        "x.yaml:7: routes[0].filters[1].rate_limit: a filter's options must be a mapping (key: value)",
        "x.yaml:8: routes[0].filters[2]: a filter entry has exactly one key, the filter name (found cors, "
        "cache); start a new list item with '-' for each filter",
        'x.yaml:9: routes[0].filters[3].plugin: expected an import path like "my_package.filters:Factory"',
        "x.yaml:10: routes[0].filters[4].options: unknown field (a plugin entry has only plugin and config)",
        "x.yaml:10: routes[0].filters[4].confg: unknown field (did you mean 'config'?)",
        "x.yaml:11: routes[0].filters[5]: a filter is a name, or a mapping with one key, the filter name: "
        "like rate_limit: {limits: [...]}",
    ]


def test_filter_specs_pass_through_when_built_in_python() -> None:
    spec = FilterSpec(name="cors", config={"origins": ["*"]})
    config = GatewayConfig.model_validate(
        {
            "clusters": {"up": {"endpoints": ["127.0.0.1:1"]}},
            "routes": [{"backend": {"cluster": "up"}, "filters": [spec]}],
        }
    )
    assert config.routes[0].filters == (spec,)
