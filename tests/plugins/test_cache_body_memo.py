"""What the cache reads of a body is remembered by the body's bytes: a repeated body is read once, a
different one is always read, the table stays within its bytes, and keys do not change."""

from __future__ import annotations

import orjson
import pytest

from gateway.core.context import Principal, RequestContext
from gateway.core.json_bounds import JsonTooComplex
from plugins.cache.body_memo import MAX_BODY_BYTES, MIN_BODY_BYTES, BodyMemo
from plugins.cache.keys import CacheKeyBuilder, canonical_body


def _body(first: float, values: int = 400) -> bytes:
    """An OIP v2 body of a few KiB, its keys in the order a client writes them."""
    data = [first, *(round(0.125 + i % 97 / 100, 3) for i in range(values))]
    tensor = {"name": "x", "shape": [1, len(data)], "datatype": "FP32", "data": data}
    return orjson.dumps({"inputs": [tensor]})


class _Counting:
    def __init__(self) -> None:
        self.reads: list[bytes] = []

    def __call__(self, body: bytes) -> bytes:
        self.reads.append(body)
        return canonical_body(body)


def test_a_repeated_body_is_read_once_and_gets_the_same_form() -> None:
    read = _Counting()
    memo = BodyMemo(read)
    body = _body(0.5)
    assert len(body) >= MIN_BODY_BYTES
    first = memo(body)
    again = memo(bytes(bytearray(body)))  # another bytes object, as the next request's body is
    assert first == again == canonical_body(body)
    assert len(read.reads) == 1


def test_bodies_that_differ_in_one_byte_are_each_read() -> None:
    read = _Counting()
    memo = BodyMemo(read)
    one, other = _body(0.5), _body(0.6)
    assert len(one) == len(other)
    assert memo(one) != memo(other)
    assert memo(one) == canonical_body(one)
    assert len(read.reads) == 2


def test_small_and_huge_bodies_are_read_every_time() -> None:
    read = _Counting()
    memo = BodyMemo(read)
    small = b'{"a": 1}'
    huge = b'{"a": "' + b"x" * MAX_BODY_BYTES + b'"}'
    for _ in range(2):
        memo(small)
        memo(huge)
    assert len(read.reads) == 4
    assert len(memo) == 0


def test_the_table_keeps_within_its_bytes_dropping_the_least_recently_used() -> None:
    read = _Counting()
    bodies = [_body(i / 10) for i in range(10)]
    # Room for about three bodies and their forms.
    memo = BodyMemo(read, max_bytes=7 * len(bodies[0]))
    for body in bodies[:3]:
        memo(body)
    memo(bodies[0])  # used again: now the youngest
    memo(bodies[3])  # pushes out the oldest, bodies[1]
    assert len(memo) <= 3
    read.reads.clear()
    memo(bodies[0])
    assert read.reads == []
    memo(bodies[1])
    assert read.reads == [bodies[1]]


def test_a_body_that_cannot_be_read_is_not_remembered() -> None:
    memo = BodyMemo(canonical_body)
    deep = b"[" * 100 + b"0" + b"]" * 100 + b" " * MIN_BODY_BYTES
    for _ in range(2):
        with pytest.raises(JsonTooComplex):
            memo(deep)
    assert len(memo) == 0


@pytest.mark.parametrize("in_process", [False, True])
def test_keys_are_the_same_whether_the_body_was_read_or_remembered(in_process: bool) -> None:
    builder = CacheKeyBuilder("infer", (), by_principal=True, in_process=in_process)
    fresh = CacheKeyBuilder("infer", (), by_principal=True, in_process=in_process)
    body = _body(0.5)

    def ctx(body: bytes) -> RequestContext:
        ctx = RequestContext("POST", "/v2/models/m/infer", "", {}, "10.0.0.1", 0.0, principal=Principal("p"))
        ctx.model, ctx.body = "m", body
        return ctx

    first = builder.key(ctx(body))
    remembered = builder.key(ctx(bytes(bytearray(body))))
    assert first == remembered == fresh.key(ctx(body))
    # Key order and spacing still do not split the cache, remembered or not.
    spaced = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    assert builder.key(ctx(spaced)) == first
    assert builder.key(ctx(_body(0.6))) != first


async def test_a_long_completion_is_told_apart_every_time_it_comes_again() -> None:
    from gateway.core.filters import BuildContext, Response
    from plugins.cache.config import CacheConfig
    from plugins.cache.factory import CacheFilterFactory

    cache = CacheFilterFactory()(CacheConfig(), BuildContext(route="chat", cluster="llm", registry=None))
    long_prompt = "word " * MIN_BODY_BYTES
    sampled = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": long_prompt}]})
    answered = orjson.dumps({"id": "chatcmpl-1", "created": 1, "choices": []})

    def ctx(body: bytes) -> RequestContext:
        ctx = RequestContext("POST", "/v1/chat/completions", "", {}, "10.0.0.1", 0.0)
        ctx.body = bytes(bytearray(body))
        return ctx

    for _ in range(3):  # a sampled completion bypasses the cache, read or remembered
        request = ctx(sampled)
        assert cache.on_request(request) is None
        answer = Response(200, [("content-type", "application/json")], answered)
        assert cache.on_response(request, answer) is None
        assert answer.header("x-turnout-cache") == "bypass"
    deterministic = orjson.dumps({**orjson.loads(sampled), "temperature": 0})
    first = ctx(deterministic)
    assert cache.on_request(first) is None
    cache.on_response(first, Response(200, [("content-type", "application/json")], answered))
    hit = cache.on_request(ctx(deterministic))
    assert isinstance(hit, Response) and hit.header("x-turnout-cache") == "hit"
    assert hit.body is not None and orjson.loads(hit.body)["id"] != "chatcmpl-1"  # renewed: a completion


def test_in_process_keys_hash_the_forms_digest_and_shared_keys_keep_theirs() -> None:
    """The memory backend's keys never leave the process; Redis keys are pinned (test_cache_keys)."""
    body = _body(0.5)
    ctx = RequestContext("POST", "/v2/models/m/infer", "", {}, "10.0.0.1", 0.0)
    ctx.model, ctx.body = "m", body
    shared = CacheKeyBuilder("infer", ()).key(ctx)
    in_process = CacheKeyBuilder("infer", (), in_process=True).key(ctx)
    assert shared.value.startswith("m:") and in_process.value.startswith("m:")
    assert shared != in_process
    for small in (b'{"b": 1, "a": 2}', b'{"a":2,"b":1}'):  # below the memo's size: read each time
        ctx.body = small
        assert CacheKeyBuilder("infer", (), in_process=True).key(ctx).value == (
            CacheKeyBuilder("infer", (), in_process=True).key(ctx).value
        )
    ctx.body = b'{"b": 1, "a": 2}'
    first = CacheKeyBuilder("infer", (), in_process=True).key(ctx)
    ctx.body = b'{"a":2,"b":1}'
    assert CacheKeyBuilder("infer", (), in_process=True).key(ctx) == first
    ctx.body = b'{"a":2,"b":3}'
    assert CacheKeyBuilder("infer", (), in_process=True).key(ctx) != first
