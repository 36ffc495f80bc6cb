"""Open Inference Protocol v2 (KServe V2 / Triton) REST bodies <-> typed requests and responses.

Pure functions, no I/O: the worker decodes requests and encodes responses with them, and the
gateway's batching and validation filters do the reverse. A body is JSON, optionally followed by raw
tensor bytes (see `binary`); tensors come out as numpy arrays already in their declared shape.
Every client mistake is a `BadRequest` whose message names the field or tensor at fault; the JSON
is read within `json_bounds`' depth and size limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import orjson

from gateway.core import json_bounds
from gateway.core.errors import BadRequest
from gateway.core.protocols.binary import (
    BINARY_DATA,
    BINARY_DATA_OUTPUT,
    BINARY_DATA_SIZE,
    BinaryParts,
    decode_tensor,
    encode_tensor,
    split_body,
)
from gateway.core.protocols.datatypes import numpy_dtype
from gateway.core.protocols.json_tensors import array_from_json, array_to_json, datatype_of_json

Parameter = bool | int | float | str
Parameters = dict[str, Parameter]

JSON_CONTENT_TYPE: Final = "application/json"
BINARY_CONTENT_TYPE: Final = "application/octet-stream"
_DUMPS_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY


@dataclass(slots=True)
class Tensor:
    """A named tensor: a request input or a response output. `data` already has the tensor's shape."""

    name: str
    datatype: str
    data: np.ndarray
    parameters: Parameters = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """An output the caller asked for; `binary` None means "as the request-level default says"."""

    name: str
    binary: bool | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(slots=True)
class InferRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] = field(default_factory=list)
    """Empty: every output of the model, in its default form."""
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)
    binary_output: bool = False
    """The request-level `binary_data_output` parameter: outputs default to binary."""

    def wants_binary(self, output: str) -> bool:
        """Whether the named output should be sent in binary."""
        for requested in self.outputs:
            if requested.name == output and requested.binary is not None:
                return requested.binary
        return self.binary_output


@dataclass(slots=True)
class InferResponse:
    model_name: str
    outputs: list[Tensor]
    model_version: str | None = None
    id: str | None = None
    parameters: Parameters = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EncodedBody:
    """A body ready to send; `header_length` is set when binary tensors follow the JSON."""

    body: bytes
    header_length: int | None = None

    @property
    def content_type(self) -> str:
        return JSON_CONTENT_TYPE if self.header_length is None else BINARY_CONTENT_TYPE


def decode_request(body: bytes, header_length: str | None = None) -> InferRequest:
    """An inference request body (JSON, or JSON + binary tensors) -> an `InferRequest`."""
    document, parts = _load(body, header_length, "request")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("request: 'inputs' must be a non-empty list of tensors")
    inputs = _decode_tensors(raw_inputs, "input", parts)
    parts.finish()
    outputs = _decode_requested_outputs(_optional(document, "outputs", []))
    parameters = _decode_parameters(document.get("parameters"), "request parameters")
    binary_output = parameters.pop(BINARY_DATA_OUTPUT, False)
    if not isinstance(binary_output, bool):
        raise BadRequest(f"request parameters: '{BINARY_DATA_OUTPUT}' must be true or false")
    return InferRequest(inputs, outputs, _decode_id(document), parameters, binary_output)


def decode_response(body: bytes, header_length: str | None = None) -> InferResponse:
    """An inference response body -> an `InferResponse` (used by the gateway and by clients)."""
    document, parts = _load(body, header_length, "response")
    model_name = document.get("model_name")
    if not isinstance(model_name, str):
        raise BadRequest("response: 'model_name' must be a string")
    raw_outputs = document.get("outputs")
    if not isinstance(raw_outputs, list):
        raise BadRequest("response: 'outputs' must be a list of tensors")
    outputs = _decode_tensors(raw_outputs, "output", parts)
    parts.finish()
    version = document.get("model_version")
    if version is not None and not isinstance(version, str):
        raise BadRequest("response: 'model_version' must be a string")
    parameters = _decode_parameters(document.get("parameters"), "response parameters")
    return InferResponse(model_name, outputs, version, _decode_id(document), parameters)


def encode_request(request: InferRequest, binary_inputs: bool = False) -> EncodedBody:
    """An `InferRequest` -> a body; with `binary_inputs` every input travels as raw bytes."""
    document: dict[str, Any] = {}
    if request.id is not None:
        document["id"] = request.id
    parameters: dict[str, Any] = dict(request.parameters)
    if request.binary_output:
        parameters[BINARY_DATA_OUTPUT] = True
    if parameters:
        document["parameters"] = parameters
    binary = [tensor.name for tensor in request.inputs] if binary_inputs else []
    document["inputs"], parts = _encode_tensors(request.inputs, binary)
    if request.outputs:
        document["outputs"] = [_encode_requested_output(output) for output in request.outputs]
    return _dump(document, parts)


def encode_response(response: InferResponse, binary_outputs: Iterable[str] = ()) -> EncodedBody:
    """An `InferResponse` -> a body; outputs named in `binary_outputs` travel as raw bytes."""
    document: dict[str, Any] = {"model_name": response.model_name}
    if response.model_version is not None:
        document["model_version"] = response.model_version
    if response.id is not None:
        document["id"] = response.id
    if response.parameters:
        document["parameters"] = response.parameters
    document["outputs"], parts = _encode_tensors(response.outputs, binary_outputs)
    return _dump(document, parts)


def _load(body: bytes, header_length: str | None, what: str) -> tuple[dict[str, Any], BinaryParts]:
    head, tail = split_body(body, header_length)
    try:
        document = json_bounds.loads(head, f"the {what} body")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"{what} body must be a JSON object, got {type(document).__name__}")
    return document, BinaryParts(tail)


def _decode_tensors(entries: list[Any], kind: str, parts: BinaryParts) -> list[Tensor]:
    tensors: list[Tensor] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        tensor = _decode_tensor(entry, f"{kind} #{index}", kind, parts)
        if tensor.name in seen:
            raise BadRequest(f"{kind} '{tensor.name}' appears more than once")
        seen.add(tensor.name)
        tensors.append(tensor)
    return tensors


def _decode_tensor(entry: Any, position: str, kind: str, parts: BinaryParts) -> Tensor:
    if not isinstance(entry, dict):
        raise BadRequest(f"{position}: a tensor must be a JSON object")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{position}: 'name' must be a non-empty string")
    where = f"{kind} '{name}'"
    datatype = entry.get("datatype")
    if datatype is None and kind == "output" and "data" in entry:
        # Optional on response outputs (TorchServe's kservev2 envelope leaves it out): read it
        # from the JSON values, as a client reading the answer directly would.
        datatype = datatype_of_json(entry["data"])
    if not isinstance(datatype, str):
        raise BadRequest(f"{where}: 'datatype' must be a string such as FP32")
    numpy_dtype(datatype, where)
    shape = _decode_shape(entry.get("shape"), where)
    parameters = _decode_parameters(entry.get("parameters"), f"{where} parameters")
    binary_size = parameters.pop(BINARY_DATA_SIZE, None)
    if binary_size is None:
        if "data" not in entry:
            raise BadRequest(f"{where}: needs 'data' or a '{BINARY_DATA_SIZE}' parameter")
        data = array_from_json(entry["data"], datatype, shape, where)
    else:
        if "data" in entry:
            raise BadRequest(f"{where}: has both 'data' and '{BINARY_DATA_SIZE}'; send one")
        if isinstance(binary_size, bool) or not isinstance(binary_size, int) or binary_size < 0:
            raise BadRequest(f"{where}: '{BINARY_DATA_SIZE}' must be a non-negative integer")
        data = decode_tensor(parts.take(binary_size, where), datatype, shape, where)
    return Tensor(name, datatype, data, parameters)


def _decode_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise BadRequest(f"{where}: 'shape' must be a list of non-negative integers")
    for dim in value:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 0:
            raise BadRequest(f"{where}: 'shape' must be a list of non-negative integers, got {value}")
    return tuple(value)


def _decode_requested_outputs(value: Any) -> list[RequestedOutput]:
    if not isinstance(value, list):
        raise BadRequest("request: 'outputs' must be a list")
    outputs: list[RequestedOutput] = []
    seen: set[str] = set()
    for index, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise BadRequest(f"requested output #{index}: must be an object with a non-empty 'name'")
        name: str = entry["name"]
        if name in seen:
            raise BadRequest(f"requested output '{name}' appears more than once")
        seen.add(name)
        parameters = _decode_parameters(entry.get("parameters"), f"requested output '{name}' parameters")
        binary = parameters.pop(BINARY_DATA, None)
        if binary is not None and not isinstance(binary, bool):
            raise BadRequest(f"requested output '{name}': '{BINARY_DATA}' must be true or false")
        outputs.append(RequestedOutput(name, binary, parameters))
    return outputs


def _optional(document: dict[str, Any], key: str, default: Any) -> Any:
    """An optional field: the spec lets servers and clients send null for one they leave out."""
    value = document.get(key)
    return default if value is None else value


def _decode_parameters(value: Any, where: str) -> Parameters:
    if value is None:  # absent, or null as KServe and MLServer write it
        return {}
    if not isinstance(value, dict):
        raise BadRequest(f"{where}: must be a JSON object")
    for key, item in value.items():
        if not isinstance(item, bool | int | float | str):
            raise BadRequest(f"{where}: '{key}' must be a string, number or boolean")
    return dict(value)


def _decode_id(document: dict[str, Any]) -> str | None:
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("'id' must be a string")
    return request_id


def _encode_tensors(tensors: list[Tensor], binary: Iterable[str]) -> tuple[list[dict[str, Any]], list[bytes]]:
    binary_names = set(binary)
    entries: list[dict[str, Any]] = []
    parts: list[bytes] = []
    for tensor in tensors:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
        parameters: dict[str, Any] = dict(tensor.parameters)
        if tensor.name in binary_names:
            raw = encode_tensor(tensor.data, tensor.datatype)
            parameters[BINARY_DATA_SIZE] = len(raw)
            parts.append(raw)
        else:
            entry["data"] = array_to_json(tensor.data, tensor.datatype, f"tensor '{tensor.name}'")
        if parameters:
            entry["parameters"] = parameters
        entries.append(entry)
    return entries, parts


def _encode_requested_output(output: RequestedOutput) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": output.name}
    parameters: dict[str, Any] = dict(output.parameters)
    if output.binary is not None:
        parameters[BINARY_DATA] = output.binary
    if parameters:
        entry["parameters"] = parameters
    return entry


def _dump(document: dict[str, Any], parts: list[bytes]) -> EncodedBody:
    head = orjson.dumps(document, option=_DUMPS_OPTIONS)
    if not parts:
        return EncodedBody(head)
    return EncodedBody(b"".join([head, *parts]), len(head))
