"""OIP v2 REST codec: every datatype round-trips through JSON and binary, and no body whatsoever makes
the decoder raise anything but BadRequest."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Literal

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gateway.core.errors import BadRequest
from gateway.core.protocols.oip_v2 import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

FIXED_DATATYPES = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
FLOAT_WIDTHS: dict[int, Literal[16, 32, 64]] = {2: 16, 4: 32, 8: 64}
shapes = st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple)
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def tensors(draw: st.DrawFn, finite: bool = True, text_bytes: bool = True) -> Tensor:
    datatype = draw(st.sampled_from([*FIXED_DATATYPES, "BYTES"]))
    shape = draw(shapes)
    if datatype == "BYTES":
        count = int(np.prod(shape))
        element = st.text(max_size=6).map(str.encode) if text_bytes else st.binary(max_size=6)
        values = draw(st.lists(element, min_size=count, max_size=count))
        data = np.empty(count, dtype=object)
        data[:] = values
        return Tensor(draw(st.text(min_size=1, max_size=8)), datatype, data.reshape(shape))
    dtype = np.dtype(FIXED_DATATYPES[datatype])
    elements = None
    if dtype.kind == "f":
        elements = st.floats(
            width=FLOAT_WIDTHS[dtype.itemsize], allow_nan=not finite, allow_infinity=not finite
        )
    data = draw(arrays(dtype, shape, elements=elements))
    return Tensor(draw(st.text(min_size=1, max_size=8)), datatype, data)


def unique(tensor_list: list[Tensor]) -> list[Tensor]:
    by_name = {tensor.name: tensor for tensor in tensor_list}
    return list(by_name.values())


def assert_same(decoded: list[Tensor], original: list[Tensor]) -> None:
    assert [tensor.name for tensor in decoded] == [tensor.name for tensor in original]
    for got, sent in zip(decoded, original, strict=True):
        assert got.datatype == sent.datatype
        assert got.shape == sent.shape
        if sent.datatype != "BYTES":
            assert got.data.dtype == sent.data.dtype
        np.testing.assert_array_equal(got.data, sent.data)


@FAST
@given(st.lists(tensors(), min_size=1, max_size=4).map(unique), st.booleans())
def test_requests_round_trip_in_json_and_binary(inputs: list[Tensor], binary: bool) -> None:
    request = InferRequest(inputs, [RequestedOutput("out", binary=True)], id="r", parameters={"p": 1.5})
    encoded = encode_request(request, binary_inputs=binary)
    header = None if encoded.header_length is None else str(encoded.header_length)
    decoded = decode_request(encoded.body, header)
    assert_same(decoded.inputs, inputs)
    assert decoded.outputs == [RequestedOutput("out", binary=True)]
    assert (decoded.id, decoded.parameters) == ("r", {"p": 1.5})


@FAST
@given(st.lists(tensors(finite=False, text_bytes=False), min_size=1, max_size=4).map(unique))
def test_binary_responses_carry_any_values(outputs: list[Tensor]) -> None:
    response = InferResponse("m", outputs, "3", "id-1")
    encoded = encode_response(response, [tensor.name for tensor in outputs])
    assert encoded.header_length is not None
    assert encoded.content_type == "application/octet-stream"
    decoded = decode_response(encoded.body, str(encoded.header_length))
    assert (decoded.model_name, decoded.model_version, decoded.id) == ("m", "3", "id-1")
    assert_same(decoded.outputs, outputs)


def test_json_response_layout_is_flat_and_row_major() -> None:
    data = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    body = encode_response(InferResponse("m", [Tensor("y", "FP32", data)], "1")).body
    assert orjson.loads(body) == {
        "model_name": "m",
        "model_version": "1",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [2, 3], "data": [0, 0.25, 0.5, 0.75, 1, 1.25]}
        ],
    }


def test_nested_and_flat_data_decode_alike() -> None:
    flat = decode_request(
        b'{"inputs":[{"name":"x","datatype":"INT32","shape":[2,2],"data":[1,2,3,4]}]}'
    ).inputs[0]
    nested = decode_request(
        b'{"inputs":[{"name":"x","datatype":"INT32","shape":[2,2],"data":[[1,2],[3,4]]}]}'
    ).inputs[0]
    np.testing.assert_array_equal(flat.data, nested.data)
    assert flat.data.dtype == np.int32


def test_wants_binary_prefers_the_output_setting_over_the_request_default() -> None:
    request = decode_request(
        b'{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","datatype":"BOOL","shape":[1],'
        b'"data":[true]}],"outputs":[{"name":"a","parameters":{"binary_data":false}},{"name":"b"}]}'
    )
    assert request.parameters == {}
    assert (request.wants_binary("a"), request.wants_binary("b"), request.wants_binary("c")) == (
        False,
        True,
        True,
    )


@pytest.mark.parametrize(
    ("datatype", "data", "message"),
    [
        ("INT64", [1.5], "datatype INT64 needs integers, got 1.5"),
        ("INT8", [-129], "value -129 is out of range for INT8"),
        ("UINT64", [2**64], "value 18446744073709551616 is out of range for UINT64"),
        ("INT64", [1, -(2**63) - 1], "value -9223372036854775808 is out of range for INT64"),
        ("UINT8", [-1, 2**63], "value -1 is out of range for UINT8"),
        ("BOOL", [1], "datatype BOOL needs booleans, got int64 values"),
        ("FP16", [70000.0], "value 70000 is out of range for FP16"),
        ("FP32", [True], "datatype FP32 needs numbers, got booleans"),
        ("BYTES", [1], "BYTES data must be strings, got int"),
        ("BF16", [1.0], "unsupported datatype 'BF16'"),
    ],
)
def test_data_that_does_not_fit_the_datatype_is_refused(datatype: str, data: list[Any], message: str) -> None:
    body = json.dumps({"inputs": [{"name": "x", "datatype": datatype, "shape": [len(data)], "data": data}]})
    with pytest.raises(BadRequest) as caught:
        decode_request(body.encode())
    assert caught.value.message.startswith(f"input 'x': {message}")


def test_uint64_beyond_int64_decodes_exactly() -> None:
    body = b'{"inputs":[{"name":"x","datatype":"UINT64","shape":[3],"data":[0,18446744073709551615,7]}]}'
    assert decode_request(body).inputs[0].data.tolist() == [0, 2**64 - 1, 7]


KEYS = [
    "inputs",
    "outputs",
    "name",
    "datatype",
    "shape",
    "data",
    "parameters",
    "id",
    "binary_data_size",
    "binary_data",
    "binary_data_output",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats(allow_nan=False)
    | st.text(max_size=4)
    | st.sampled_from(["FP32", "BYTES", "INT8", "BOOL"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(KEYS), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.binary(max_size=16), st.none() | st.integers(-2, 400).map(str))
def test_any_body_decodes_or_raises_bad_request(document: Any, tail: bytes, header: str | None) -> None:
    body = json.dumps(document).encode() + tail
    try:
        decode_request(body, header)
    except BadRequest as exc:
        assert exc.status == 400
        assert exc.message


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(KEYS), max_size=3), json_values)
def test_any_tensor_entry_decodes_or_raises_bad_request(keys: list[str], value: Any) -> None:
    entry: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [2], "data": [1.0, 2.0]}
    for key in keys:
        entry[key] = value
    with contextlib.suppress(BadRequest):
        decode_request(json.dumps({"inputs": [entry], "outputs": [{"name": "y", "parameters": {}}]}).encode())
