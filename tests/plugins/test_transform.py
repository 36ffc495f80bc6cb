"""transform: request and response header edits, JSON body field moves."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from gateway.upstream_request import header_edits
from plugins.transform import FACTORY, TransformConfig


def build(config: dict[str, Any]) -> tuple[Filter, CollectorRegistry]:
    registry = CollectorRegistry()
    return FACTORY(FACTORY.config_model.model_validate(config), BuildContext("r1", "c1", registry)), registry


def make_ctx(headers: dict[str, str] | None = None, body: bytes | None = None) -> RequestContext:
    ctx = RequestContext("POST", "/v2/models/m/infer", "", dict(headers or {}), "127.0.0.1", time.monotonic())
    ctx.body = body
    return ctx


def request(filter_: Filter, ctx: RequestContext) -> Response | None:
    answer = filter_.on_request(ctx)
    assert answer is None or isinstance(answer, Response)
    return answer


def test_request_headers_rename_remove_add() -> None:
    filter_, _ = build(
        {
            "request_headers": {
                "rename": {"X-Client-Version": "x-model-client"},
                "remove": ["x-debug", "x-absent"],
                "add": {"X-Gateway": "turnout", "x-tier": "gold"},
            }
        }
    )
    assert filter_.needs_request_body is False
    sent = {"x-client-version": "1.2", "x-debug": "1", "x-tier": "spoofed", "accept": "*/*"}
    ctx = make_ctx(dict(sent))
    assert request(filter_, ctx) is None
    assert ctx.headers == {"accept": "*/*", "x-model-client": "1.2", "x-gateway": "turnout", "x-tier": "gold"}
    # What the upstream gets: the client's lines less those removed or replaced, then the new values.
    edits = header_edits(sent, ctx.headers)
    assert edits is not None
    assert edits.strip == {"x-client-version", "x-debug", "x-tier"}
    assert sorted(edits.add) == [("x-gateway", "turnout"), ("x-model-client", "1.2"), ("x-tier", "gold")]


def test_removing_a_header_an_earlier_filter_set_drops_that_value_too() -> None:
    filter_, _ = build({"request_headers": {"remove": ["x-user-id"]}})
    ctx = make_ctx({"accept": "*/*"})
    ctx.headers.update({"x-user-id": "alice", "x-tenant": "acme"})  # as an earlier filter set them
    assert request(filter_, ctx) is None
    assert ctx.headers == {"accept": "*/*", "x-tenant": "acme"}


def test_response_headers_rename_remove_add() -> None:
    filter_, _ = build(
        {
            "response_headers": {
                "rename": {"x-model-version": "x-turnout-model-version"},
                "remove": ["server"],
                "add": {"cache-control": "no-store"},
            }
        }
    )
    response = Response(
        200,
        [
            ("server", "triton"),
            ("x-model-version", "3"),
            ("x-turnout-model-version", "stale"),
            ("cache-control", "max-age=60"),
            ("content-type", "application/json"),
        ],
        b"{}",
    )
    filter_.on_response(make_ctx(), response)
    assert response.headers == [
        ("x-turnout-model-version", "3"),
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
    ]


def test_response_rename_without_the_source_keeps_the_target() -> None:
    filter_, _ = build({"response_headers": {"rename": {"x-a": "x-b"}}})
    response = Response(200, [("x-b", "kept")])
    filter_.on_response(make_ctx(), response)
    assert response.headers == [("x-b", "kept")]


def test_body_fields_move_between_dotted_paths() -> None:
    filter_, registry = build(
        {
            "request_body_rename": {
                "text": "inputs.text",
                "params.temp": "parameters.temperature",
                "gone": "x.y",
            }
        }
    )
    assert filter_.needs_request_body is True
    ctx = make_ctx(body=orjson.dumps({"text": "hello", "params": {"temp": 0.2, "top_k": 5}, "id": 1}))
    assert request(filter_, ctx) is None
    assert ctx.body is not None
    assert orjson.loads(ctx.body) == {
        "params": {"top_k": 5},
        "id": 1,
        "inputs": {"text": "hello"},
        "parameters": {"temperature": 0.2},
    }
    labels = {"filter": "transform", "route": "r1", "decision": "body_rewritten"}
    assert registry.get_sample_value("turnout_filter_decisions_total", labels) == 1


def test_body_without_the_fields_is_forwarded_untouched() -> None:
    filter_, _ = build({"request_body_rename": {"text": "inputs.text"}})
    original = b'{"other":  1}'
    ctx = make_ctx(body=original)
    assert request(filter_, ctx) is None
    assert ctx.body is original
    empty = make_ctx(body=b"")
    assert request(filter_, empty) is None and empty.body == b""
    array = make_ctx(body=b"[1, 2]")
    assert request(filter_, array) is None and array.body == b"[1, 2]"


def test_body_that_is_not_json_is_400() -> None:
    filter_, registry = build({"request_body_rename": {"text": "inputs.text"}})
    answer = request(filter_, make_ctx(body=b"text=hello"))
    assert answer is not None and answer.status == 400
    assert orjson.loads(answer.body or b"") == {
        "error": "the request body is not valid JSON",
        "code": "bad_request",
    }
    labels = {"filter": "transform", "route": "r1", "decision": "bad_body"}
    assert registry.get_sample_value("turnout_filter_decisions_total", labels) == 1


def test_destination_through_a_non_object_is_400() -> None:
    filter_, _ = build({"request_body_rename": {"text": "inputs.text"}})
    answer = request(filter_, make_ctx(body=b'{"text": "hi", "inputs": [1]}'))
    assert answer is not None and answer.status == 400
    assert b"inputs is not an object" in (answer.body or b"")


@pytest.mark.parametrize(
    "config",
    [
        {"request_headers": {"remove": ["content-length"]}},
        {"response_headers": {"add": {"transfer-encoding": "chunked"}}},
        {"request_headers": {"add": {"x-a": "one\r\nx-b: two"}}},
        {"request_headers": {"rename": {"x-a": "X-A"}}},
        {"request_headers": {"add": {"bad name": "v"}}},
        {"request_body_rename": {"a..b": "c"}},
        {"request_body_rename": {"a": "a"}},
        {"response_headers": {"append": {}}},
    ],
)
def test_invalid_configs(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        TransformConfig.model_validate(config)
