"""Open Inference Protocol v2 requests merged into one batch and the answer split back, per member.

Every input of a member shares the batch dimension (dim 0); the batch concatenates each input along
it, in member order. The answer's outputs must carry the same total number of rows, which are cut
back by each member's count. Each member's share is encoded as that member asked (JSON, or binary
per output or for the whole response) and carries the member's request id, so how the batch
travelled upstream (JSON or binary tensors) is invisible to the caller.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gateway.core.errors import BadGateway, BadRequest
from gateway.core.protocols.binary import HEADER_LENGTH
from gateway.core.protocols.oip_v2 import (
    InferRequest,
    InferResponse,
    RequestedOutput,
    Tensor,
    decode_response,
    encode_request,
    encode_response,
)
from plugins.batching.payload import EncodedBatch, MemberBody, Payload, parameters_signature

_HEADER_LENGTH_KEY = HEADER_LENGTH.lower()


class OipBatchFormat:
    """Batches of Open Inference Protocol v2 REST requests."""

    __slots__ = ("_binary",)

    def __init__(self, binary_tensors: bool) -> None:
        self._binary = binary_tensors

    def prepare(self, request: Any, original: EncodedBatch | None = None) -> Payload:
        if not isinstance(request, InferRequest):
            raise TypeError(f"expected an InferRequest, got {type(request).__name__}")
        rows = -1
        first = ""
        inputs = []
        for tensor in request.inputs:
            shape = tensor.data.shape
            if not shape:
                raise BadRequest(
                    f"input '{tensor.name}': shape [] has no batch dimension; a batched route needs the "
                    "examples along the first dimension"
                )
            if rows < 0:
                rows, first = shape[0], tensor.name
            elif shape[0] != rows:
                raise BadRequest(
                    f"inputs disagree on the batch size: '{first}' has {rows} rows, "
                    f"'{tensor.name}' has {shape[0]}"
                )
            inputs.append((tensor.name, tensor.datatype, shape[1:], parameters_signature(tensor.parameters)))
        if rows == 0:
            raise BadRequest(f"input '{first}' has 0 rows: there is nothing to infer")
        inputs.sort()
        outputs = tuple(sorted((out.name, parameters_signature(out.parameters)) for out in request.outputs))
        signature = ("oip_v2", tuple(inputs), outputs, parameters_signature(request.parameters))
        return Payload(request, rows, signature, self, original)

    def merge(self, payloads: Sequence[Payload], binary: bool = True) -> EncodedBatch:
        requests = [_oip(payload) for payload in payloads]
        first = requests[0]
        inputs = [
            Tensor(
                tensor.name,
                tensor.datatype,
                _concatenate([_input(request, index, tensor.name) for request in requests]),
                tensor.parameters,
            )
            for index, tensor in enumerate(first.inputs)
        ]
        # Binary-ness of outputs is left to the batch's own choice: each member's share is re-encoded
        # as that member asked, so only names and parameters of requested outputs travel.
        outputs = [RequestedOutput(output.name, None, output.parameters) for output in first.outputs]
        binary = binary and self._binary
        batch = InferRequest(inputs, outputs, None, dict(first.parameters), binary)
        encoded = encode_request(batch, binary_inputs=binary)
        headers = {} if encoded.header_length is None else {HEADER_LENGTH: str(encoded.header_length)}
        return EncodedBatch(encoded.body, encoded.content_type, headers)

    def split(self, headers: Mapping[str, str], body: bytes, payloads: Sequence[Payload]) -> list[MemberBody]:
        try:
            response = decode_response(body, headers.get(_HEADER_LENGTH_KEY))
        except BadRequest as exc:
            raise BadGateway(f"the upstream's answer to a batch is malformed: {exc.message}") from None
        total = sum(payload.rows for payload in payloads)
        # Values per row of each output: 1 for outputs batched along dim 0 (their rows are cut);
        # k for a flat output of total * k values (TorchServe flattens), cut k values per row.
        per_row = [_values_per_row(output, total) for output in response.outputs]
        members: list[MemberBody] = []
        start = 0
        for payload in payloads:
            end = start + payload.rows
            request = _oip(payload)
            outputs = [
                Tensor(output.name, output.datatype, output.data[start * k : end * k], output.parameters)
                for output, k in zip(response.outputs, per_row, strict=True)
            ]
            # The member's own id when it sent one; else the upstream's, as a direct call would get.
            answer_id = request.id if request.id is not None else response.id
            share = InferResponse(
                response.model_name, outputs, response.model_version, answer_id, response.parameters
            )
            binary = [output.name for output in outputs if request.wants_binary(output.name)]
            encoded = encode_response(share, binary)
            if encoded.header_length is None:
                member_headers: tuple[tuple[str, str], ...] = (("content-type", encoded.content_type),)
            else:
                member_headers = (
                    ("content-type", encoded.content_type),
                    (_HEADER_LENGTH_KEY, str(encoded.header_length)),
                )
            members.append(MemberBody(member_headers, encoded.body))
            start = end
        return members


def _oip(payload: Payload) -> InferRequest:
    request = payload.request
    if not isinstance(request, InferRequest):
        raise TypeError("an Open Inference Protocol batch holds only InferRequests")
    return request


def _input(request: InferRequest, index: int, name: str) -> np.ndarray:
    """The named input; members usually list inputs in the same order, so try that position first."""
    inputs = request.inputs
    if index < len(inputs) and inputs[index].name == name:
        return inputs[index].data
    for tensor in inputs:
        if tensor.name == name:
            return tensor.data
    raise KeyError(name)  # equal signatures guarantee the same input names


def _values_per_row(output: Tensor, total: int) -> int:
    """How many entries along dim 0 belong to one row of the batch; BadGateway when not a whole number."""
    shape = output.data.shape
    if shape and shape[0] == total:
        return 1
    if len(shape) == 1 and shape[0] > total and shape[0] % total == 0:
        return int(shape[0]) // total
    raise BadGateway(
        f"the upstream answered a batch of {total} rows with output '{output.name}' of shape "
        f"{list(shape)}; it cannot be split by rows (is the model batched along dim 0?)"
    )


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
