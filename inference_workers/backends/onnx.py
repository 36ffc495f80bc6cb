"""ONNX Runtime backend: one InferenceSession per loaded model, shared by its executor threads.

CUDA runs through CUDAExecutionProvider when the model's device is a GPU; a CPU-only onnxruntime
build then fails the load with a message instead of quietly running on the CPU. The session's own
thread pools default to one thread: the worker's concurrency comes from `instance_count` runs side
by side, and for the small tabular models we serve, fanning one batch-1 run out over cores costs more
in hand-offs than it saves. Raise `intra_op_threads` for big models.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import numpy as np
import onnxruntime as ort
from pydantic import Field

from gateway.core.config_types import StrictModel
from gateway.core.protocols.datatypes import BYTES
from inference_workers.backends.base import ModelLoadError, ModelSource, parse_options, require_artifact
from inference_workers.config import TensorSpec

ONNX_TYPES: Final = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": BYTES,
}

_OPTIMIZATION_LEVELS: Final = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class OnnxOptions(StrictModel):
    intra_op_threads: int = Field(default=1, ge=0)
    """Threads one run may use; 0 lets ONNX Runtime pick (one per physical core)."""
    inter_op_threads: int = Field(default=1, ge=0)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"


class OnnxBackend:
    __slots__ = ("_session", "_string_inputs")

    def __init__(self, session: ort.InferenceSession, string_inputs: frozenset[str]) -> None:
        self._session = session
        self._string_inputs = string_inputs

    @classmethod
    def load(cls, source: ModelSource) -> OnnxBackend:
        options = parse_options(source, OnnxOptions)
        path = require_artifact(source)
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = options.inter_op_threads
        session_options.graph_optimization_level = _OPTIMIZATION_LEVELS[options.graph_optimization]
        try:
            session = ort.InferenceSession(str(path), session_options, providers=_providers(source))
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise ModelLoadError(f"{source.label}: onnxruntime cannot load {path.name}: {exc}") from None
        _check_signature(source, "input", source.config.inputs, session.get_inputs())
        _check_signature(source, "output", source.config.outputs, session.get_outputs())
        strings = frozenset(spec.name for spec in source.config.inputs if spec.datatype == BYTES)
        return cls(session, strings)

    def run(self, inputs: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        feeds = dict(inputs)
        for name in self._string_inputs:
            feeds[name] = _as_strings(feeds[name])
        results = self._session.run(list(outputs), feeds)
        return dict(zip(outputs, results, strict=True))

    def close(self) -> None:
        # Sessions free their memory when collected; dropping our reference is all there is to do.
        del self._session


def _providers(source: ModelSource) -> list[Any]:
    if source.device.kind == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ModelLoadError(
            f"{source.label}: device {source.device} needs onnxruntime's CUDAExecutionProvider, which this "
            "onnxruntime build lacks; install onnxruntime-gpu, or set device: cpu"
        )
    return [("CUDAExecutionProvider", {"device_id": source.device.index}), "CPUExecutionProvider"]


def _check_signature(
    source: ModelSource, kind: str, specs: Sequence[TensorSpec], actual: Sequence[Any]
) -> None:
    by_name = {node.name: node for node in actual}
    for spec in specs:
        node = by_name.get(spec.name)
        if node is None:
            raise ModelLoadError(
                f"{source.label}: model.yaml {kind} '{spec.name}' is not in the ONNX graph, which has "
                f"{', '.join(sorted(by_name))}"
            )
        datatype = ONNX_TYPES.get(node.type)
        if datatype != spec.datatype:
            raise ModelLoadError(
                f"{source.label}: {kind} '{spec.name}' is {node.type} in the ONNX graph but {spec.datatype} "
                "in model.yaml"
            )
        if len(node.shape) != len(spec.shape):
            raise ModelLoadError(
                f"{source.label}: {kind} '{spec.name}' has rank {len(node.shape)} in the ONNX graph "
                f"but shape {list(spec.shape)} in model.yaml"
            )


def _as_strings(array: np.ndarray) -> np.ndarray:
    """BYTES tensors hold bytes; ONNX Runtime's string tensors take str."""
    flat = [item.decode() if isinstance(item, bytes) else str(item) for item in array.reshape(-1)]
    return np.array(flat, dtype=object).reshape(array.shape)
