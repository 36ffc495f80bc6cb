"""Property tests of the request-body readers: the bounded JSON reader, the OIP v2 and KServe v1
decoders (and the batching formats that take what they decode), the OpenAI-style token and row
costs, and the cache key. Whatever the bytes, each answers or raises a 4xx `GatewayError`, within
a deadline: nothing else escapes, nothing hangs."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.context import Principal, RequestContext
from gateway.core.errors import GatewayError
from gateway.core.json_bounds import MAX_DEPTH, JsonTooComplex, loads, nesting_depth
from gateway.core.protocols.kserve_v1 import decode_v1_request, encode_v1_request
from gateway.core.protocols.oip_v2 import decode_request, encode_request
from plugins.batching.oip_format import OipBatchFormat
from plugins.batching.v1_format import V1BatchFormat
from plugins.cache.keys import CacheKeyBuilder
from plugins.rate_limit.costs import cost_rows, cost_tokens

# Each example gets 2 s: the slowest body here decodes in milliseconds, so only a hang (or work
# growing far faster than the input) runs out. No example database: the tree stays clean.
FUZZ = settings(
    max_examples=150,
    deadline=timedelta(seconds=2),
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
)
# Numbers nested as tensors are: lists of equal or ragged rows, a few levels deep.
numbers = st.integers(-(2**65), 2**65) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans()
tensor_data = st.recursive(
    numbers | st.text(max_size=4), lambda inner: st.lists(inner, max_size=4), max_leaves=24
)
datatypes = st.sampled_from(
    ["BOOL", "UINT8", "UINT64", "INT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BYTES", "BF16", "fp32", ""]
)
shapes = st.lists(st.integers(-2, 6) | st.integers(0, 2**70) | st.just(True), max_size=5) | json_values


@st.composite
def oip_bodies(draw: st.DrawFn) -> bytes:
    """OIP v2-shaped documents with any field wrong in any way, as JSON text."""
    entry: dict[str, Any] = {
        "name": draw(st.text(max_size=4) | json_values),
        "datatype": draw(datatypes | json_values),
        "shape": draw(shapes),
    }
    if draw(st.booleans()):
        entry["data"] = draw(tensor_data | json_values)
    if draw(st.booleans()):
        entry["parameters"] = draw(
            st.dictionaries(st.sampled_from(["binary_data_size", "x"]), scalars | json_values, max_size=2)
        )
    document: dict[str, Any] = {"inputs": draw(st.lists(st.just(entry), max_size=2) | json_values)}
    if draw(st.booleans()):
        document["outputs"] = draw(st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)}), max_size=2))
    if draw(st.booleans()):
        document["parameters"] = draw(st.dictionaries(st.text(max_size=20), scalars, max_size=2))
    return json.dumps(document).encode()


@st.composite
def v1_bodies(draw: st.DrawFn) -> bytes:
    field = draw(st.sampled_from(["instances", "inputs"]))
    value = draw(
        tensor_data
        | st.lists(st.dictionaries(st.sampled_from(["a", "b"]), tensor_data, max_size=2), max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b"]), tensor_data, max_size=2)
        | json_values
    )
    return json.dumps({field: value}).encode()


@st.composite
def deep_bodies(draw: st.DrawFn) -> bytes:
    """Bodies nested anywhere from harmless to past orjson's read limit, closed or not."""
    depth = draw(st.integers(0, 1100))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"b":', b"}]")]))
    inner = draw(st.sampled_from([b"1", b'"x"', b"[]", b"{}"]))
    body = opener * depth + inner + (closer * depth if draw(st.booleans()) else b"")
    envelope = draw(st.sampled_from([b"%s", b'{"inputs":%s}', b'{"instances":[%s]}', b'{"messages":[%s]}']))
    return envelope % body


openai_bodies = st.fixed_dictionaries(
    {},
    optional={
        "prompt": json_values,
        "input": json_values,
        "messages": st.lists(st.fixed_dictionaries({}, optional={"content": json_values}), max_size=3)
        | json_values,
        "max_tokens": json_values,
        "max_completion_tokens": json_values,
    },
).map(lambda document: json.dumps(document).encode())

any_body = st.binary(max_size=256) | oip_bodies() | v1_bodies() | deep_bodies() | openai_bodies


def depth_of(value: Any) -> int:
    """The nesting depth of a parsed document, without recursion (documents go 1,000 deep)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | dict):
            deepest = max(deepest, depth + 1)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def refusal(error: GatewayError) -> None:
    """A refusal must be the caller's fault, with a message for the caller."""
    assert 400 <= error.status < 500, error
    assert error.message
    orjson.loads(error.body())


def context(body: bytes, header_length: str | None = None) -> RequestContext:
    headers = {} if header_length is None else {"inference-header-content-length": header_length}
    ctx = RequestContext("POST", "/v2/models/m/infer", "", headers, "10.0.0.1", 0.0, principal=Principal("p"))
    ctx.route, ctx.model, ctx.body = "r", "m", body
    return ctx


# ----- the bounded reader -----


@FUZZ
@given(st.binary(max_size=512) | deep_bodies())
def test_the_bounded_reader_raises_only_its_refusal_or_a_parse_error(body: bytes) -> None:
    try:
        document = loads(body)
    except JsonTooComplex as error:
        refusal(error)
        return
    except orjson.JSONDecodeError:
        return
    orjson.dumps(document, option=orjson.OPT_SORT_KEYS)  # what it returns can always be written back


@FUZZ
@given(json_values.map(lambda value: json.dumps(value).encode()) | deep_bodies())
def test_the_measured_depth_is_the_documents_depth(text: bytes) -> None:
    try:
        document = orjson.loads(text)  # orjson reads up to 1024 levels: the reference
    except orjson.JSONDecodeError:
        return
    depth = depth_of(document)
    assert nesting_depth(text) == depth
    if depth <= MAX_DEPTH:
        assert loads(text) == document
    else:
        try:
            loads(text)
        except JsonTooComplex as error:
            refusal(error)
        else:
            raise AssertionError(f"a document {depth} levels deep was read")


# ----- protocol decoders and what takes their output -----


@FUZZ
@given(any_body, st.none() | st.integers(-2, 300).map(str) | st.text(max_size=4))
def test_oip_v2_requests_decode_or_are_refused(body: bytes, header_length: str | None) -> None:
    try:
        request = decode_request(body, header_length)
        OipBatchFormat(binary_tensors=False).prepare(request)
        encode_request(request, binary_inputs=True)
    except GatewayError as error:
        refusal(error)


@FUZZ
@given(any_body)
def test_kserve_v1_requests_decode_or_are_refused(body: bytes) -> None:
    try:
        request = decode_v1_request(body)
        V1BatchFormat().prepare(request)
        encode_v1_request(request.instances)
    except GatewayError as error:
        refusal(error)


@FUZZ
@given(any_body, st.none() | st.integers(-2, 300).map(str))
def test_openai_token_and_row_costs_are_counted_or_refused(body: bytes, header_length: str | None) -> None:
    ctx = context(body, header_length)
    for cost in (cost_tokens, cost_rows):
        try:
            assert cost(ctx) >= 1
        except JsonTooComplex as error:
            refusal(error)


@FUZZ
@given(any_body)
def test_a_cache_key_is_made_or_refused(body: bytes) -> None:
    try:
        key = CacheKeyBuilder("r", ("x-lang",), by_principal=True).key(context(body))
    except JsonTooComplex as error:
        refusal(error)
        return
    assert key.value.startswith("m:")
