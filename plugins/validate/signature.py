"""A model's signature, read from its OIP v2 metadata, and the checks of a request against it.

Metadata is `{"name", "inputs": [{"name", "datatype", "shape"}], "outputs": [...]}`, where a shape
dimension of -1 accepts any size (usually the batch dimension). Every refusal is a `BadRequest`
whose message names the input and says what the model expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import BadRequest
from gateway.core.protocols.datatypes import DATATYPES, format_shape
from gateway.core.protocols.oip_v2 import InferRequest

_ANY_SIZE = -1


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ModelSignature:
    model: str
    inputs: dict[str, TensorSpec]
    outputs: frozenset[str]


def signature_from_metadata(model: str, metadata: Mapping[str, Any]) -> ModelSignature:
    """The signature in a metadata document; ValueError when the document is not valid metadata."""
    inputs = _tensors(metadata.get("inputs"), "inputs")
    outputs = _tensors(metadata.get("outputs", []), "outputs")
    return ModelSignature(
        model, {spec.name: spec for spec in inputs}, frozenset(spec.name for spec in outputs)
    )


def check_request(request: InferRequest, signature: ModelSignature, *, require_all_inputs: bool) -> None:
    """Raise BadRequest at the first way `request` does not fit `signature`."""
    model = signature.model
    expected = signature.inputs
    for tensor in request.inputs:
        spec = expected.get(tensor.name)
        if spec is None:
            raise BadRequest(
                f"input '{tensor.name}' is not an input of model '{model}'; its inputs are {_names(expected)}"
            )
        if tensor.datatype != spec.datatype:
            raise BadRequest(
                f"input '{tensor.name}': datatype {tensor.datatype} does not match model '{model}', "
                f"which expects {spec.datatype}"
            )
        _check_shape(tensor.name, tensor.shape, spec, model)
    if require_all_inputs:
        sent = {tensor.name for tensor in request.inputs}
        for name in expected:
            if name not in sent:
                raise BadRequest(f"input '{name}' of model '{model}' is missing from the request")
    if signature.outputs:
        for output in request.outputs:
            if output.name not in signature.outputs:
                raise BadRequest(
                    f"requested output '{output.name}' is not an output of model '{model}'; its outputs "
                    f"are {_names(signature.outputs)}"
                )


def _check_shape(name: str, shape: tuple[int, ...], spec: TensorSpec, model: str) -> None:
    wanted = format_shape(spec.shape)
    if len(shape) != len(spec.shape):
        raise BadRequest(
            f"input '{name}': shape {format_shape(shape)} has {len(shape)} dimensions; model '{model}' "
            f"expects {len(spec.shape)} ({wanted})"
        )
    for axis, (size, fixed) in enumerate(zip(shape, spec.shape, strict=True)):
        if fixed != _ANY_SIZE and size != fixed:
            raise BadRequest(
                f"input '{name}': dimension {axis} of shape {format_shape(shape)} is {size}; model '{model}' "
                f"expects {fixed} ({wanted})"
            )


def _tensors(value: Any, field: str) -> list[TensorSpec]:
    if not isinstance(value, list):
        raise ValueError(f"metadata '{field}' is not a list")
    specs = []
    for entry in value:
        if not isinstance(entry, dict):
            raise ValueError(f"metadata '{field}' holds a {type(entry).__name__}, not a tensor")
        name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
        if not isinstance(name, str) or datatype not in DATATYPES:
            raise ValueError(f"metadata '{field}': tensor {entry!r} lacks a name or a known datatype")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= _ANY_SIZE for d in shape):
            raise ValueError(f"metadata '{field}': tensor '{name}' has shape {shape!r}")
        specs.append(TensorSpec(name, str(datatype), tuple(shape)))
    return specs


def _names(names: Mapping[str, Any] | frozenset[str]) -> str:
    return ", ".join(f"'{name}'" for name in sorted(names)) or "(none)"
