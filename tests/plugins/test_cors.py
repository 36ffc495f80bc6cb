"""cors: preflight answers, simple requests, wildcard origins, credentials."""

from __future__ import annotations

import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.cors import FACTORY, CorsConfig

APP = "https://app.example.com"


def build(config: dict[str, Any]) -> tuple[Filter, CollectorRegistry]:
    registry = CollectorRegistry()
    return FACTORY(FACTORY.config_model.model_validate(config), BuildContext("r1", "c1", registry)), registry


def preflight(
    filter_: Filter, origin: str, method: str = "POST", headers: str | None = None
) -> tuple[RequestContext, Response | None]:
    request_headers = {"origin": origin, "access-control-request-method": method}
    if headers is not None:
        request_headers["access-control-request-headers"] = headers
    ctx = RequestContext("OPTIONS", "/v2/models/m/infer", "", request_headers, "127.0.0.1", time.monotonic())
    answer = filter_.on_request(ctx)
    assert answer is None or isinstance(answer, Response)
    return ctx, answer


def actual(filter_: Filter, origin: str | None, upstream: Response | None = None) -> Response:
    headers = {} if origin is None else {"origin": origin}
    ctx = RequestContext("POST", "/v2/models/m/infer", "", headers, "127.0.0.1", time.monotonic())
    assert filter_.on_request(ctx) is None
    response = upstream or Response(200, [("content-type", "application/json")], b"{}")
    filter_.on_response(ctx, response)
    return response


def count(registry: CollectorRegistry, decision: str) -> float | None:
    labels = {"filter": "cors", "route": "r1", "decision": decision}
    return registry.get_sample_value("turnout_filter_decisions_total", labels)


def test_preflight_from_an_allowed_origin_is_answered_with_204() -> None:
    filter_, registry = build(
        {
            "allow_origins": [APP],
            "allow_methods": ["GET", "POST"],
            "allow_headers": ["Content-Type", "Authorization"],
            "max_age": "10m",
            "allow_credentials": True,
        }
    )
    ctx, answer = preflight(filter_, APP, "POST", "content-type, Authorization")
    assert answer is not None and answer.status == 204 and answer.body == b""
    assert answer.header("access-control-allow-origin") == APP
    assert answer.header("access-control-allow-methods") == "GET, POST"
    assert answer.header("access-control-allow-headers") == "content-type, authorization"
    assert answer.header("access-control-max-age") == "600"
    assert answer.header("access-control-allow-credentials") == "true"
    assert answer.header("vary") == "origin"
    filter_.on_response(ctx, answer)  # the response phase leaves the preflight answer as it was
    assert answer.header("vary") == "origin" and count(registry, "allowed") == 0
    assert count(registry, "preflight") == 1


@pytest.mark.parametrize(
    ("origin", "method", "headers", "reason"),
    [
        ("https://evil.example", "POST", None, "origin https://evil.example is not allowed"),
        (APP, "DELETE", None, "method not allowed"),
        (APP, "POST", "content-type, x-debug", "request headers not allowed: x-debug"),
    ],
)
def test_preflight_refusals(origin: str, method: str, headers: str | None, reason: str) -> None:
    filter_, registry = build({"allow_origins": [APP], "allow_headers": ["content-type"]})
    _, answer = preflight(filter_, origin, method, headers)
    assert answer is not None and answer.status == 403
    assert answer.header("access-control-allow-origin") is None
    assert answer.body is not None and reason.encode() in answer.body
    assert count(registry, "preflight_refused") == 1


def test_defaults_allow_any_origin_and_reflect_requested_headers() -> None:
    filter_, _ = build({})
    _, answer = preflight(filter_, "https://anywhere.example", "POST", "X-Custom, Content-Type")
    assert answer is not None and answer.status == 204
    assert answer.header("access-control-allow-origin") == "*"
    assert answer.header("access-control-allow-headers") == "x-custom, content-type"
    assert answer.header("vary") == "access-control-request-headers"
    assert answer.header("access-control-allow-credentials") is None


def test_plain_options_goes_upstream() -> None:
    filter_, _ = build({})
    ctx = RequestContext("OPTIONS", "/", "", {"origin": APP}, "127.0.0.1", time.monotonic())
    assert filter_.on_request(ctx) is None


def test_simple_request_from_an_allowed_origin_is_marked() -> None:
    filter_, registry = build({"allow_origins": [APP], "expose_headers": ["X-Request-Id"]})
    response = actual(filter_, APP, Response(200, [("vary", "accept-encoding")], b"{}"))
    assert response.header("access-control-allow-origin") == APP
    assert response.header("access-control-expose-headers") == "x-request-id"
    assert response.header("vary") == "accept-encoding, origin"
    assert count(registry, "allowed") == 1


def test_any_origin_without_credentials_answers_star() -> None:
    filter_, _ = build({"allow_origins": ["*"]})
    response = actual(filter_, APP)
    assert response.header("access-control-allow-origin") == "*"
    assert response.header("vary") is None


def test_disallowed_origin_gets_no_cors_headers_even_from_upstream() -> None:
    filter_, registry = build({"allow_origins": [APP]})
    upstream = Response(
        200, [("access-control-allow-origin", "*"), ("access-control-allow-credentials", "true")]
    )
    response = actual(filter_, "https://evil.example", upstream)
    assert response.header("access-control-allow-origin") is None
    assert response.header("access-control-allow-credentials") is None
    assert response.header("vary") == "origin"
    assert count(registry, "refused") == 1


def test_request_without_origin_is_untouched() -> None:
    filter_, _ = build({"allow_origins": [APP]})
    assert actual(filter_, None).headers == [("content-type", "application/json")]


@pytest.mark.parametrize(
    ("pattern", "origin", "allowed"),
    [
        ("https://*.example.com", "https://app.example.com", True),
        ("https://*.example.com", "https://a.b.example.com", True),
        ("https://*.example.com", "HTTPS://App.Example.com", True),
        ("https://*.example.com", "http://app.example.com", False),
        ("https://*.example.com", "https://example.com", False),
        ("https://*.example.com", "https://app.example.com:8443", False),
        ("https://*.example.com", "https://app.example.com.evil.net", False),
        ("https://*.example.com", "https://evilexample.com", False),
        ("*.example.com", "http://app.example.com", True),
        ("*.example.com", "https://app.example.com", True),
        ("https://*.example.com:8443", "https://app.example.com:8443", True),
        ("http://localhost:3000", "http://localhost:3000", True),
        ("http://localhost:3000", "http://localhost:3001", False),
    ],
)
def test_origin_patterns(pattern: str, origin: str, allowed: bool) -> None:
    filter_, _ = build({"allow_origins": [pattern]})
    _, answer = preflight(filter_, origin)
    assert answer is not None and (answer.status == 204) is allowed


def test_credentialed_requests_echo_the_origin() -> None:
    filter_, _ = build({"allow_origins": ["https://*.example.com"], "allow_credentials": True})
    response = actual(filter_, APP)
    assert response.header("access-control-allow-origin") == APP
    assert response.header("access-control-allow-credentials") == "true"


@pytest.mark.parametrize(
    "config",
    [
        {"allow_origins": ["*"], "allow_credentials": True},
        {"allow_origins": ["app.example.com"]},
        {"allow_origins": ["https://app.*.com"]},
        {"allow_origins": ["https://app.example.com/path"]},
        {"allow_methods": ["GET POST"]},
        {"allow_headers": ["bad header"]},
        {"max_age": "soon"},
    ],
)
def test_invalid_configs(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CorsConfig.model_validate(config)
