"""A model's tensor signature, and the checks of a request (and of the model's answer) against it.

Built once per loaded model from its config, so the per-request work is dictionary look-ups and a few
integer comparisons. Mistakes in a request are `BadRequest`s naming the tensor and the rule broken;
an output that disagrees with model.yaml is the model's fault and raises `ModelOutputError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gateway.core.errors import BadRequest
from gateway.core.protocols.datatypes import format_shape, numpy_dtype
from gateway.core.protocols.oip_v2 import RequestedOutput, Tensor
from inference_workers.config import ModelConfig, TensorSpec


class ModelOutputError(Exception):
    """The backend produced an output that does not match the model's configured signature."""


class Signature:
    __slots__ = ("_all_outputs", "_inputs", "_label", "_max_batch", "_outputs")

    def __init__(self, label: str, config: ModelConfig) -> None:
        self._label = label
        self._inputs = {spec.name: spec for spec in config.inputs}
        self._outputs = {spec.name: spec for spec in config.outputs}
        self._all_outputs = [spec.name for spec in config.outputs]
        self._max_batch = config.max_batch_size

    def check_inputs(self, tensors: Sequence[Tensor]) -> tuple[dict[str, np.ndarray], int]:
        """The request's inputs by name, checked against the signature; and the batch size (1 when the
        model does not batch)."""
        arrays: dict[str, np.ndarray] = {}
        batch: tuple[str, int] | None = None
        for tensor in tensors:
            spec = self._inputs.get(tensor.name)
            if spec is None:
                known = ", ".join(self._inputs)
                raise BadRequest(f"input '{tensor.name}' is not an input of {self._label} (inputs: {known})")
            _check_tensor(tensor.name, tensor.datatype, tensor.shape, spec)
            if self._max_batch:
                batch = self._check_batch(tensor, batch)
            arrays[tensor.name] = tensor.data
        missing = [name for name in self._inputs if name not in arrays]
        if missing:
            raise BadRequest(
                f"input '{missing[0]}' is missing; {self._label} needs {', '.join(self._inputs)}"
            )
        return arrays, batch[1] if batch else 1

    def select_outputs(self, requested: Sequence[RequestedOutput]) -> list[str]:
        """The output names to compute: those requested, or all of them."""
        if not requested:
            return self._all_outputs
        names = []
        for output in requested:
            if output.name not in self._outputs:
                raise BadRequest(
                    f"output '{output.name}' is not an output of {self._label} "
                    f"(outputs: {', '.join(self._all_outputs)})"
                )
            names.append(output.name)
        return names

    def output_tensors(self, results: Mapping[str, Any], names: Sequence[str]) -> list[Tensor]:
        """Backend results -> response tensors, each checked against its configured spec."""
        tensors = []
        for name in names:
            spec = self._outputs[name]
            array = np.asarray(results[name])
            dtype = numpy_dtype(spec.datatype, f"output '{name}'")
            if array.dtype != dtype:
                if array.dtype.kind == "O" or dtype.kind == "O":
                    raise ModelOutputError(
                        f"{self._label}: output '{name}' is {array.dtype}, not {spec.datatype}"
                    )
                array = array.astype(dtype)
            if not _shape_fits(array.shape, spec.shape):
                raise ModelOutputError(
                    f"{self._label}: output '{name}' has shape {format_shape(array.shape)}, "
                    f"model.yaml says {format_shape(spec.shape)}"
                )
            tensors.append(Tensor(name, spec.datatype, array))
        return tensors

    def _check_batch(self, tensor: Tensor, seen: tuple[str, int] | None) -> tuple[str, int]:
        size = tensor.shape[0]
        if size < 1:
            raise BadRequest(f"input '{tensor.name}': batch size must be at least 1, got {size}")
        if size > self._max_batch:
            raise BadRequest(
                f"input '{tensor.name}': batch size {size} exceeds the max_batch_size {self._max_batch} "
                f"of {self._label}"
            )
        if seen is not None and seen[1] != size:
            raise BadRequest(
                f"inputs disagree on the batch size: '{seen[0]}' has {seen[1]}, '{tensor.name}' has {size}"
            )
        return tensor.name, size


def _check_tensor(name: str, datatype: str, shape: tuple[int, ...], spec: TensorSpec) -> None:
    if datatype != spec.datatype:
        raise BadRequest(f"input '{name}': datatype {datatype} does not match the model's {spec.datatype}")
    if len(shape) != len(spec.shape):
        raise BadRequest(
            f"input '{name}': shape {format_shape(shape)} has rank {len(shape)}, the model needs rank "
            f"{len(spec.shape)} ({format_shape(spec.shape)})"
        )
    for axis, (got, want) in enumerate(zip(shape, spec.shape, strict=True)):
        if want != -1 and got != want:
            raise BadRequest(
                f"input '{name}': shape {format_shape(shape)} does not match the model's "
                f"{format_shape(spec.shape)} at dimension {axis}"
            )


def _shape_fits(shape: tuple[int, ...], spec: tuple[int, ...]) -> bool:
    return len(shape) == len(spec) and all(want in (-1, got) for got, want in zip(shape, spec, strict=True))
