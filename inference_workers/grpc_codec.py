"""gRPC `ModelInferRequest`/`ModelInferResponse` messages <-> the typed `InferRequest`/`InferResponse`.

Input tensors come either as typed `contents` (one repeated field per family of datatypes) or as
`raw_input_contents` (the binary extension's per-tensor layout); never both. Responses answer in the
form the request used, except that FP16 has no typed field and forces raw contents. Checks are the
REST codec's (shape against element count, integer ranges, ...), with the same messages.

The generated modules are untyped (and kept out of mypy), so they are imported by name and handled
as `Any` here, at the one boundary where messages are built or read.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from gateway.core.errors import BadRequest
from gateway.core.protocols.binary import as_bytes, decode_tensor, encode_tensor
from gateway.core.protocols.datatypes import BYTES, element_count, format_shape, numpy_dtype
from gateway.core.protocols.json_tensors import array_from_json
from gateway.core.protocols.oip_v2 import InferRequest, InferResponse, Parameters, RequestedOutput, Tensor

pb: Any = importlib.import_module("inference_workers.grpc_gen.open_inference_grpc_pb2")
pb_grpc: Any = importlib.import_module("inference_workers.grpc_gen.open_inference_grpc_pb2_grpc")

CONTENTS_FIELDS: Final = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    BYTES: "bytes_contents",
}
"""Datatype -> the typed `InferTensorContents` field that carries it (FP16 has none)."""

# Integer parameters above this do not fit int64_param and travel as uint64_param.
_INT64_MAX: Final = 2**63 - 1


def request_from_proto(message: Any) -> tuple[str, str | None, InferRequest, bool]:
    """A ModelInferRequest -> (model, version or None, request, whether it used raw contents)."""
    raw = list(message.raw_input_contents)
    if raw and len(raw) != len(message.inputs):
        raise BadRequest(f"raw_input_contents has {len(raw)} entries for {len(message.inputs)} inputs")
    inputs: list[Tensor] = []
    seen: set[str] = set()
    for index, tensor in enumerate(message.inputs):
        where = f"input '{tensor.name}'" if tensor.name else f"input #{index}"
        if not tensor.name:
            raise BadRequest(f"{where}: 'name' must be a non-empty string")
        if tensor.name in seen:
            raise BadRequest(f"{where} appears more than once")
        seen.add(tensor.name)
        numpy_dtype(tensor.datatype, where)
        shape = tuple(tensor.shape)
        if any(dim < 0 for dim in shape):
            raise BadRequest(f"{where}: 'shape' must be non-negative integers, got {format_shape(shape)}")
        if raw:
            if tensor.HasField("contents"):
                raise BadRequest(f"{where}: has typed contents while the request uses raw_input_contents")
            data = decode_tensor(raw[index], tensor.datatype, shape, where)
        else:
            data = _from_contents(tensor.contents, tensor.datatype, shape, where)
        inputs.append(Tensor(tensor.name, tensor.datatype, data, parameters_from_proto(tensor.parameters)))
    if not inputs:
        raise BadRequest("request: 'inputs' must hold at least one tensor")
    outputs = [
        RequestedOutput(output.name, None, parameters_from_proto(output.parameters))
        for output in message.outputs
    ]
    request = InferRequest(inputs, outputs, message.id or None, parameters_from_proto(message.parameters))
    return message.model_name, message.model_version or None, request, bool(raw)


def response_to_proto(response: InferResponse, raw: bool) -> Any:
    """An InferResponse -> a ModelInferResponse, with raw or typed contents."""
    raw = raw or any(output.datatype not in CONTENTS_FIELDS for output in response.outputs)
    message = pb.ModelInferResponse(
        model_name=response.model_name, model_version=response.model_version or "", id=response.id or ""
    )
    parameters_to_proto(response.parameters, message.parameters)
    for output in response.outputs:
        tensor = message.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        parameters_to_proto(output.parameters, tensor.parameters)
        if raw:
            message.raw_output_contents.append(encode_tensor(output.data, output.datatype))
        else:
            _fill_contents(tensor.contents, output.data, output.datatype)
    return message


def request_to_proto(model: str, version: str | None, request: InferRequest, raw: bool = True) -> Any:
    """An InferRequest -> a ModelInferRequest (for clients, tests and benchmarks)."""
    message = pb.ModelInferRequest(model_name=model, model_version=version or "", id=request.id or "")
    parameters_to_proto(request.parameters, message.parameters)
    for tensor in request.inputs:
        entry = message.inputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
        parameters_to_proto(tensor.parameters, entry.parameters)
        if raw:
            message.raw_input_contents.append(encode_tensor(tensor.data, tensor.datatype))
        else:
            _fill_contents(entry.contents, tensor.data, tensor.datatype)
    for output in request.outputs:
        parameters_to_proto(output.parameters, message.outputs.add(name=output.name).parameters)
    return message


def response_from_proto(message: Any) -> InferResponse:
    """A ModelInferResponse -> an InferResponse (for clients, tests and benchmarks)."""
    raw = list(message.raw_output_contents)
    outputs = []
    for index, tensor in enumerate(message.outputs):
        where, shape = f"output '{tensor.name}'", tuple(tensor.shape)
        if raw:
            data = decode_tensor(raw[index], tensor.datatype, shape, where)
        else:
            data = _from_contents(tensor.contents, tensor.datatype, shape, where)
        outputs.append(Tensor(tensor.name, tensor.datatype, data, parameters_from_proto(tensor.parameters)))
    parameters = parameters_from_proto(message.parameters)
    return InferResponse(
        message.model_name, outputs, message.model_version or None, message.id or None, parameters
    )


def parameters_from_proto(entries: Mapping[str, Any]) -> Parameters:
    parameters: Parameters = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        if choice is not None:
            parameters[key] = getattr(value, choice)
    return parameters


def parameters_to_proto(parameters: Parameters, entries: Any) -> None:
    for key, value in parameters.items():
        target = entries[key]
        if isinstance(value, bool):
            target.bool_param = value
        elif isinstance(value, int):
            if value > _INT64_MAX:
                target.uint64_param = value
            else:
                target.int64_param = value
        elif isinstance(value, float):
            target.double_param = value
        else:
            target.string_param = value


def _from_contents(contents: Any, datatype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    field = CONTENTS_FIELDS.get(datatype)
    if field is None:
        if element_count(shape) == 0:
            return np.empty(shape, dtype=numpy_dtype(datatype, where))
        raise BadRequest(f"{where}: {datatype} has no typed contents field; send it in raw_input_contents")
    values = getattr(contents, field)
    if not values:
        others = [descriptor.name for descriptor, _ in contents.ListFields()]
        if others:
            raise BadRequest(f"{where}: datatype {datatype} travels in {field}, got {', '.join(others)}")
    if datatype == BYTES:
        count = element_count(shape)
        if len(values) != count:
            raise BadRequest(f"{where}: shape {format_shape(shape)} needs {count} values, got {len(values)}")
        array = np.empty(count, dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    return array_from_json(list(values), datatype, shape, where)


def _fill_contents(contents: Any, data: np.ndarray, datatype: str) -> None:
    field = CONTENTS_FIELDS[datatype]
    flat = data.reshape(-1)
    if datatype == BYTES:
        getattr(contents, field).extend([as_bytes(item) for item in flat])
    else:
        getattr(contents, field).extend(flat.tolist())
