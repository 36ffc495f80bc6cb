"""Cache keys are stable: gateways of different versions share a Redis cache, so the key of a
request must not change with how it is computed. These keys were made by hashing each part in
turn, as the key builder did before it joined the parts into one hash."""

from __future__ import annotations

import pytest

from gateway.core.context import Principal, RequestContext
from plugins.cache.keys import CacheKeyBuilder


def _everything() -> RequestContext:
    ctx = RequestContext(
        "POST",
        "/v2/models/résumé/infer",
        "q=1&ü=2",
        {"x-lang": "fr", "host": "h"},
        "10.0.0.1",
        0.0,
        principal=Principal("alice", tenant="acme"),
    )
    ctx.route, ctx.model, ctx.model_version, ctx.arm = "infer", "résumé", "2", "treatment"
    ctx.body = b'{"b": [1.50, 2], "a": "\\u00e9"}'
    return ctx


def _nothing() -> RequestContext:
    return RequestContext("GET", "/", "", {}, "10.0.0.1", 0.0)


def _raw() -> RequestContext:
    ctx = RequestContext("POST", "/v1/x", "", {"x-lang": "de"}, "10.0.0.1", 0.0)
    ctx.model, ctx.body = "m", b"not json \xff"
    return ctx


@pytest.mark.parametrize(
    ("ctx", "vary", "by_principal", "canonical", "expected"),
    [
        (
            _everything(),
            ("x-lang", "x-missing"),
            True,
            True,
            "r%C3%A9sum%C3%A9:9addb93124a9c8b9a51399d23e4b4cb009ae7b88d2003bcff0568d023f5b21f6",
        ),
        (_nothing(), (), False, True, ":29e9c9abcd05daa830a2c9a8c53f08bc76eca81fe4d488cf8c8fd66a9499da6b"),
        (
            _raw(),
            ("x-lang",),
            False,
            False,
            "m:7e177cf5393277edf6a554bff18e198a3a546eb8199b911f21122c307a560670",
        ),
    ],
)
def test_a_request_keeps_its_key(
    ctx: RequestContext, vary: tuple[str, ...], by_principal: bool, canonical: bool, expected: str
) -> None:
    builder = CacheKeyBuilder("infer", vary, by_principal=by_principal, canonical_json=canonical)
    assert builder.key(ctx).value == expected
