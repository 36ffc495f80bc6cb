"""Optional OIP v2 fields may be absent or null everywhere, as KServe, MLServer and TorchServe send
them; what is required stays required."""

from __future__ import annotations

import orjson
import pytest

from gateway.core.errors import BadRequest
from gateway.core.protocols.oip_v2 import decode_request, decode_response


def test_a_kserve_answer_with_nulls_decodes() -> None:
    body = orjson.dumps(
        {
            "model_name": "bc",
            "model_version": None,
            "id": None,
            "parameters": None,
            "outputs": [
                {"name": "output-0", "shape": [2], "datatype": "INT64", "parameters": None, "data": [0, 1]}
            ],
        }
    )
    response = decode_response(body)
    assert response.id is None and response.model_version is None and response.parameters == {}
    assert response.outputs[0].parameters == {} and response.outputs[0].data.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("data", "datatype"),
    [([1, 2], "INT64"), ([1.5, 2], "FP64"), ([True, False], "BOOL"), (["a", "b"], "BYTES"), ([], "FP32")],
)
def test_an_output_without_a_datatype_reads_it_from_its_values(data: list[object], datatype: str) -> None:
    body = orjson.dumps({"model_name": "m", "outputs": [{"name": "o", "shape": [len(data)], "data": data}]})
    assert decode_response(body).outputs[0].datatype == datatype


def test_a_request_with_null_optional_fields_decodes() -> None:
    body = orjson.dumps(
        {
            "id": None,
            "parameters": None,
            "outputs": None,
            "inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": None}],
        }
    )
    request = decode_request(body)
    assert request.id is None and request.parameters == {} and request.outputs == []
    assert request.inputs[0].parameters == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{"name": "x", "shape": [1], "data": [1]}]}, "'datatype' must be a string"),
        ({"inputs": None}, "'inputs' must be a non-empty list"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "parameters": [1]},
            "JSON object",
        ),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "id": 7},
            "'id' must be a string",
        ),
    ],
)
def test_required_fields_stay_required_on_requests(body: dict[str, object], message: str) -> None:
    """A request input's datatype is not guessed: the client's intent decides the tensor's type."""
    with pytest.raises(BadRequest, match=message):
        decode_request(orjson.dumps(body))
