"""`canonical_json: false`: the cache key hashes a JSON body as sent, without parsing it."""

from __future__ import annotations

import time

import pytest

from gateway.config import ConfigError
from gateway.core.context import RequestContext
from plugins.cache import CacheConfig
from plugins.cache.keys import CacheKeyBuilder

SORTED = b'{"id":"a","inputs":[{"data":[1,2],"name":"x"}]}'
SPACED = b'{"inputs": [{"name": "x", "data": [1, 2]}], "id": "a"}'


def _request(body: bytes) -> RequestContext:
    ctx = RequestContext("POST", "/v2/models/m/infer", "", {}, "127.0.0.1", time.monotonic())
    ctx.body = body
    return ctx


def _key(builder: CacheKeyBuilder, body: bytes) -> str:
    return builder.key(_request(body)).value


def test_raw_keys_tell_apart_what_canonical_keys_join() -> None:
    canonical = CacheKeyBuilder("infer", ())
    raw = CacheKeyBuilder("infer", (), canonical_json=False)

    assert _key(canonical, SORTED) == _key(canonical, SPACED)
    assert _key(raw, SORTED) != _key(raw, SPACED)
    assert _key(raw, SORTED) == _key(raw, SORTED)
    assert _key(raw, SORTED) != _key(raw, SORTED.replace(b"2", b"3"))


def test_raw_keys_take_a_body_that_is_not_json_or_too_deep_for_json() -> None:
    raw = CacheKeyBuilder("infer", (), canonical_json=False)
    deep = b"[" * 500 + b"]" * 500  # refused (400) by the canonical key, which must parse it

    assert _key(raw, deep) != _key(raw, b"\x00binary")
    assert _key(raw, b"") == _key(raw, b"")


def test_canonical_json_is_the_default_and_a_boolean() -> None:
    assert CacheConfig().canonical_json is True
    assert CacheConfig(canonical_json=False).canonical_json is False
    with pytest.raises((ConfigError, ValueError)):
        CacheConfig(canonical_json="sometimes")  # type: ignore[arg-type]
