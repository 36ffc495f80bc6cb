"""Request and response bodies -> what monitoring counts: feature rows, outputs, LLM usage.

Runs in the monitor's background task, never on the request path. The protocol is told by the
config or, with `auto`, by the body: an OpenAI body has `messages` or `prompt`; an OIP v2 body has
`inputs` as a list of tensor objects; anything else with `instances` or `inputs` is KServe v1. A
gRPC `ModelInfer` call's messages are protobuf (`decode_grpc`).
Tensors are read by the shared decoders in `gateway.core.protocols` (with their JSON bounds), so a
body the gateway would refuse is refused here with the same message, as a `BadRequest`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from gateway.core import json_bounds
from gateway.core.errors import BadRequest
from gateway.core.protocols import kserve_v1, oip_v2


@dataclass(slots=True)
class Observation:
    """One sampled exchange, decoded."""

    rows: np.ndarray | None = None
    """(examples, features) float64 input rows; None when the inputs are not numeric tensors."""
    names: tuple[str, ...] | None = None
    """Feature names when the body names them (named KServe columns, several OIP inputs)."""
    outputs: list[tuple[str, np.ndarray]] = field(default_factory=list)
    version: str | None = None
    """The model version the response names (OIP v2 `model_version`)."""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    finish_reasons: list[str] = field(default_factory=list)


def decode(protocol: str, request: bytes, response: bytes, header_length: str | None) -> Observation:
    """Decode one exchange; raises `BadRequest` naming what could not be read."""
    if protocol == "auto":
        # Binary tensor data after a JSON header: only OIP v2 has that.
        protocol = "oip_v2" if header_length is not None else _guess(request)
    if protocol == "openai":
        return _openai(request, response)
    if protocol == "oip_v2":
        return _oip(request, response, header_length)
    return _kserve(request, response)


def joined_observations(observations: list[Observation]) -> Observation | None:
    """One observation holding all of these (rows stacked, outputs joined along the batch axis), or
    None when they do not line up (different features or output shapes): then each is taken alone."""
    if len(observations) == 1:
        return observations[0]
    first = observations[0]
    if any(
        (one.rows is None) != (first.rows is None)
        or (one.rows is not None and first.rows is not None and one.rows.shape[1] != first.rows.shape[1])
        or one.names != first.names
        or [name for name, _ in one.outputs] != [name for name, _ in first.outputs]
        or [data.shape[1:] for _, data in one.outputs] != [data.shape[1:] for _, data in first.outputs]
        or any(data.ndim == 0 for _, data in one.outputs)
        for one in observations
    ):
        return None
    rows = (
        None if first.rows is None else np.vstack([one.rows for one in observations if one.rows is not None])
    )
    outputs = [
        (name, np.concatenate([one.outputs[index][1] for one in observations]))
        for index, (name, _) in enumerate(first.outputs)
    ]
    joined = Observation(rows, first.names, outputs, first.version)
    if any(one.prompt_tokens is not None or one.completion_tokens is not None for one in observations):
        return None  # LLM answers are counted one by one (their histograms take one length each)
    joined.finish_reasons = [reason for one in observations for reason in one.finish_reasons]
    return joined


def _guess(request: bytes) -> str:
    document = _load(request, "request")
    if "messages" in document or "prompt" in document:
        return "openai"
    inputs = document.get("inputs")
    if isinstance(inputs, list) and inputs and isinstance(inputs[0], dict) and "datatype" in inputs[0]:
        return "oip_v2"
    return "kserve_v1"


def decode_grpc(request: bytes, response: bytes) -> Observation:
    """A unary OIP v2 `ModelInfer` call's request and reply messages, read by the gateway's gRPC
    codec (the generated classes of the `workers` extra, as validation and batching use them);
    raises `BadRequest` naming what could not be read."""
    from gateway.grpc.oip_messages import codec, pb  # gRPC's classes: loaded by the first gRPC sample

    try:
        message, reply = (
            pb().ModelInferRequest.FromString(request),
            pb().ModelInferResponse.FromString(response),
        )
    except ImportError:
        raise BadRequest("a gRPC sample needs the OIP v2 message classes (the workers extra)") from None
    except Exception as exc:  # protobuf's DecodeError
        raise BadRequest(f"a gRPC message could not be read: {exc}") from None
    _, _, decoded, _ = codec().request_from_proto(message)
    return _observation(decoded, codec().response_from_proto(reply))


def _oip(request: bytes, response: bytes, header_length: str | None) -> Observation:
    # A JSON response: the request's header length described the request's binary part, not this one.
    return _observation(oip_v2.decode_request(request, header_length), oip_v2.decode_response(response))


def _observation(decoded: oip_v2.InferRequest, answer: oip_v2.InferResponse) -> Observation:
    # Text and bytes inputs have no numeric distribution to sketch.
    numeric = [tensor for tensor in decoded.inputs if tensor.data.dtype.kind in "biuf"]
    columns = [_as_rows(tensor.data) for tensor in numeric]
    rows = _stack(columns)
    # Several named inputs: their names; one input tensor's columns: by index.
    named = None
    if len(decoded.inputs) > 1:
        named = tuple(
            name
            for tensor, block in zip(numeric, columns, strict=True)
            for name in (
                [tensor.name]
                if block.shape[1] == 1
                else [f"{tensor.name}[{j}]" for j in range(block.shape[1])]
            )
        )
    outputs = [(tensor.name, tensor.data) for tensor in answer.outputs]
    return Observation(rows, named, outputs, answer.model_version)


def _kserve(request: bytes, response: bytes) -> Observation:
    instances = kserve_v1.decode_v1_request(request).instances
    rows: np.ndarray | None
    names: tuple[str, ...] | None = None
    if isinstance(instances, dict):
        names = tuple(instances)
        rows = _stack([_as_rows(column) for column in instances.values() if column.dtype.kind in "biuf"])
        if rows is not None and rows.shape[1] != len(names):
            rows, names = None, None  # a vector-valued named column: no one-name-per-feature mapping
    else:
        rows = _as_rows(instances) if instances.dtype.kind in "biuf" else None
    predictions = kserve_v1.decode_v1_response(response)
    return Observation(rows, names, [("predictions", predictions)])


def _openai(request: bytes, response: bytes) -> Observation:
    _load(request, "request")  # proves the request is JSON within bounds; its text is not sketched
    answer = _load(response, "response")
    usage = answer.get("usage")
    prompt = completion = None
    if isinstance(usage, dict):
        prompt = _count(usage.get("prompt_tokens"))
        completion = _count(usage.get("completion_tokens"))
    reasons = []
    choices = answer.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                reasons.append(choice["finish_reason"])
    return Observation(prompt_tokens=prompt, completion_tokens=completion, finish_reasons=reasons)


def _as_rows(data: np.ndarray) -> np.ndarray:
    """A tensor -> (examples, features): the first axis is the batch, the rest are flattened."""
    array = np.asarray(data, dtype=np.float64)
    if array.ndim == 0:
        return array.reshape(1, 1)
    if array.ndim == 1:
        return array.reshape(-1, 1)
    return array.reshape(array.shape[0], -1)


def _stack(columns: list[np.ndarray]) -> np.ndarray | None:
    if not columns:
        return None
    lengths = {block.shape[0] for block in columns}
    if len(lengths) > 1:
        raise BadRequest(f"inputs have different numbers of examples {sorted(lengths)}")
    return np.hstack(columns)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json_bounds.loads(body, f"the {what} body")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"{what} body must be a JSON object")
    return document
