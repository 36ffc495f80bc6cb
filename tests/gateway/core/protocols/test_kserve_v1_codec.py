"""KServe V1 bodies: instances (rows), inputs (columns), predictions."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.core.errors import BadRequest
from gateway.core.protocols.kserve_v1 import (
    decode_v1_request,
    decode_v1_response,
    encode_v1_request,
    encode_v1_response,
)


def test_instances_become_one_array_with_examples_first() -> None:
    request = decode_v1_request(b'{"instances": [[1, 2], [3, 4], [5, 6]]}')
    assert isinstance(request.instances, np.ndarray)
    assert request.instances.shape == (3, 2)
    assert request.batch_size == 3


def test_row_objects_become_named_columns_and_round_trip() -> None:
    body = b'{"instances": [{"a": 1, "b": [1.5, 2]}, {"b": [3, 4], "a": 2}]}'
    request = decode_v1_request(body)
    assert isinstance(request.instances, dict)
    assert request.instances["a"].tolist() == [1, 2]
    assert request.instances["b"].shape == (2, 2)
    assert request.batch_size == 2
    again = decode_v1_request(encode_v1_request(request.instances))
    assert isinstance(again.instances, dict)
    np.testing.assert_array_equal(again.instances["b"], request.instances["b"])


def test_columnar_inputs() -> None:
    request = decode_v1_request(b'{"inputs": {"x": [1, 2, 3], "y": ["p", "q", "r"]}}')
    assert isinstance(request.instances, dict)
    assert request.instances["y"].tolist() == ["p", "q", "r"]
    assert request.batch_size == 3


def test_predictions_round_trip() -> None:
    body = encode_v1_response(np.array([[0.25, 0.75]], dtype=np.float32))
    assert orjson.loads(body) == {"predictions": [[0.25, 0.75]]}
    np.testing.assert_array_equal(decode_v1_response(body), [[0.25, 0.75]])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "request body must be a JSON object"),
        (b"{", "request body is not valid JSON"),
        (b'{"rows": []}', "request: needs 'instances' (a list of examples) or 'inputs'"),
        (b'{"instances": [], "inputs": []}', "request: send 'instances' or 'inputs', not both"),
        (b'{"instances": []}', "request: 'instances' must be a non-empty list"),
        (b'{"instances": [[1, 2], [3]]}', "instances: ragged lists"),
        (b'{"instances": [null]}', "instances: values must be numbers, booleans or strings"),
        (
            b'{"instances": [{"a": 1}, {"b": 2}]}',
            "instances[1]: keys ['b'] differ from the first row's ['a']",
        ),
        (b'{"inputs": {"a": [1], "b": [1, 2]}}', "inputs: named inputs have different numbers of examples"),
    ],
)
def test_malformed_requests_are_refused(body: bytes, message: str) -> None:
    with pytest.raises(BadRequest) as caught:
        decode_v1_request(body)
    assert caught.value.message.startswith(message)
