"""A model's signature, read from its OIP v2 metadata, and the checks of a request against it.

Metadata is `{"name", "inputs": [{"name", "datatype", "shape"}], "outputs": [...]}`, where a shape
dimension of -1 accepts any size (usually the batch dimension). Every refusal is a `BadRequest`
whose message names the input and says what the model expects.

The specs make `inputs` and `outputs` lists that a server may leave empty (MLServer and KServe do
for a model that declares no signature), so an empty list means "unknown", not "none": those checks
are skipped. Declared outputs are not taken as exhaustive either (MLServer's scikit-learn runtime
serves `predict_proba` whatever the metadata lists). `check_request` answers what it could not
check, so the filter can say so once; with `strict` each of those is a refusal instead.
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
    """Empty: the model declares no inputs, so they are unknown."""
    outputs: frozenset[str]
    """Empty: the model declares no outputs, so they are unknown."""


def signature_from_metadata(model: str, metadata: Mapping[str, Any]) -> ModelSignature:
    """The signature in a metadata document; ValueError when the document is not valid metadata."""
    inputs = _tensors(_list_or_empty(metadata, "inputs"), "inputs")
    outputs = _tensors(_list_or_empty(metadata, "outputs"), "outputs")
    return ModelSignature(
        model, {spec.name: spec for spec in inputs}, frozenset(spec.name for spec in outputs)
    )


def check_request(
    request: InferRequest, signature: ModelSignature, *, require_all_inputs: bool, strict: bool = False
) -> tuple[str, ...]:
    """Raise BadRequest at the first way `request` does not fit `signature`; answer what could not
    be checked because the model does not declare it (refused instead when `strict`)."""
    model = signature.model
    expected = signature.inputs
    unchecked: list[str] = []
    if not expected:
        if strict:
            raise BadRequest(f"model '{model}' declares no inputs, and this route accepts only declared ones")
        unchecked.append("inputs (none declared)")
    for tensor in request.inputs if expected else ():
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
    for output in request.outputs:
        if output.name not in signature.outputs:
            if strict:
                raise BadRequest(
                    f"requested output '{output.name}' is not an output of model '{model}'; its outputs "
                    f"are {_names(signature.outputs)}"
                )
            unchecked.append(f"output '{output.name}' (not declared)")
    return tuple(unchecked)


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


def _list_or_empty(metadata: Mapping[str, Any], field: str) -> Any:
    """Both fields are optional in the specs, and servers write null for them."""
    value = metadata.get(field)
    return [] if value is None else value


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
