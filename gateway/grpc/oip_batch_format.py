"""OIP v2 gRPC `ModelInfer` calls merged into one upstream call, and the answer split back by rows.

The batching filter's queues and timers (`plugins/batching`) do the waiting; this is the format
they are given for protobuf messages, as `OipBatchFormat` is theirs for REST bodies. Only calls whose
tensors travel in `raw_input_contents` are merged: each input's bytes are concatenated along the
first dimension (a BYTES tensor's length-prefixed elements too) and its dim 0 summed; nothing is
decoded into arrays. A call with typed `contents`, inputs that disagree on dim 0, or raw contents
that do not fill their shape is not merged (`mergeable` answers None) and goes upstream alone.
Members share a batch only with equal signatures: input names, datatypes, dims after the first and
parameters, requested outputs, and the request's parameters.

The answer's outputs must carry the batch's rows along dim 0 (or k values per row in a flat
output); each member gets its rows, in its own `ModelInferResponse`, with its own `id`, and the
upstream's initial and trailing metadata by the batcher's rule for headers (`plugins/batching/
sender.py`): the batcher carries metadata as text, binary values (`-bin` keys) base64-encoded as
on the wire (`text_metadata`), and each member's call gets them back as bytes (`member_metadata`).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.core.errors import BadGateway
from gateway.core.protocols.datatypes import numpy_dtype
from gateway.grpc.metadata import Metadata
from gateway.grpc.oip_messages import codec, pb
from plugins.batching.member import BatchAnswer
from plugins.batching.payload import EncodedBatch, MemberBody, Payload, parameters_signature
from plugins.batching.upstream import Pairs

GRPC_CONTENT_TYPE = "application/grpc"
_BYTES = "BYTES"
# A BYTES element's length prefix: 4 bytes, little-endian (the binary tensor extension's layout).
_PREFIX = 4


@dataclass(frozen=True, slots=True)
class GrpcInfer:
    """A `ModelInferRequest` that can join a batch."""

    message: Any
    rows: int
    raw: dict[str, bytes]
    """Each input's raw contents by name."""


def mergeable(message: Any) -> GrpcInfer | None:
    """The call as a batch member, or None when it must go alone (see the module docstring)."""
    raw = message.raw_input_contents
    inputs = message.inputs
    if not inputs or len(raw) != len(inputs):
        return None
    rows = -1
    by_name: dict[str, bytes] = {}
    for tensor, contents in zip(inputs, raw, strict=True):
        shape = tuple(tensor.shape)
        if not shape or shape[0] <= 0 or (rows >= 0 and shape[0] != rows) or tensor.name in by_name:
            return None
        rows = shape[0]
        if tensor.datatype != _BYTES:
            try:
                size = numpy_dtype(tensor.datatype, tensor.name).itemsize
            except Exception:  # an unknown datatype: the upstream says what is wrong with it
                return None
            if len(contents) != math.prod(shape) * size:
                return None
        by_name[tensor.name] = contents
    return GrpcInfer(message, rows, by_name)


class GrpcBatchFormat:
    """The `BatchFormat` of `ModelInferRequest` messages (`GrpcInfer`). Stateless."""

    __slots__ = ()

    def prepare(self, request: Any, original: EncodedBatch | None = None) -> Payload:
        assert isinstance(request, GrpcInfer)
        message = request.message
        parameters = codec().parameters_from_proto
        inputs = tuple(
            sorted(
                (t.name, t.datatype, tuple(t.shape)[1:], parameters_signature(parameters(t.parameters)))
                for t in message.inputs
            )
        )
        outputs = tuple(
            sorted((o.name, parameters_signature(parameters(o.parameters))) for o in message.outputs)
        )
        signature = ("oip_grpc", inputs, outputs, parameters_signature(parameters(message.parameters)))
        return Payload(request, request.rows, signature, self, original)  # type: ignore[arg-type]

    def merge(self, payloads: Sequence[Payload], binary: bool = True) -> EncodedBatch:
        members = [_member(payload) for payload in payloads]
        first = members[0].message
        total = sum(member.rows for member in members)
        batch = pb().ModelInferRequest(model_name=first.model_name, model_version=first.model_version)
        _copy_parameters(first.parameters, batch.parameters)
        for tensor in first.inputs:
            entry = batch.inputs.add(
                name=tensor.name, datatype=tensor.datatype, shape=[total, *tuple(tensor.shape)[1:]]
            )
            _copy_parameters(tensor.parameters, entry.parameters)
            batch.raw_input_contents.append(b"".join(member.raw[tensor.name] for member in members))
        for output in first.outputs:
            _copy_parameters(output.parameters, batch.outputs.add(name=output.name).parameters)
        return EncodedBatch(batch.SerializeToString(), GRPC_CONTENT_TYPE, {})

    def split(self, headers: Mapping[str, str], body: bytes, payloads: Sequence[Payload]) -> list[MemberBody]:
        try:
            response = pb().ModelInferResponse.FromString(body)
        except Exception as exc:  # protobuf's DecodeError
            raise BadGateway(f"the upstream's answer to a batch is not a ModelInferResponse: {exc}") from None
        members = [_member(payload) for payload in payloads]
        total = sum(member.rows for member in members)
        raw = response.raw_output_contents
        if raw and len(raw) != len(response.outputs):
            raise BadGateway("the upstream's answer to a batch has raw contents for some outputs only")
        cuts = [
            _cuts(output, raw[index] if raw else None, total) for index, output in enumerate(response.outputs)
        ]
        shares: list[MemberBody] = []
        row = 0
        for member in members:
            end = row + member.rows
            request = member.message
            share = pb().ModelInferResponse(
                model_name=response.model_name,
                model_version=response.model_version,
                id=request.id or response.id,
            )
            _copy_parameters(response.parameters, share.parameters)
            for index, (output, cut) in enumerate(zip(response.outputs, cuts, strict=True)):
                per_row, bounds = cut
                shape = tuple(output.shape)
                tensor = share.outputs.add(
                    name=output.name,
                    datatype=output.datatype,
                    shape=[member.rows, *shape[1:]] if per_row == 0 else [member.rows * per_row],
                )
                _copy_parameters(output.parameters, tensor.parameters)
                if raw:
                    share.raw_output_contents.append(raw[index][bounds[row] : bounds[end]])
                else:
                    _slice_contents(output.contents, tensor.contents, bounds[row], bounds[end])
            shares.append(MemberBody((), share.SerializeToString()))
            row = end
        return shares


def _cuts(output: Any, contents: bytes | None, total: int) -> tuple[int, list[int]]:
    """(values per row of a flat output, 0 for an output batched along dim 0; where each of the
    `total` rows starts, in bytes of `contents` or in values of the typed contents, and ends)."""
    shape = tuple(output.shape)
    if shape and shape[0] == total:
        per_row, values = 0, math.prod(shape[1:])
    elif len(shape) == 1 and total and shape[0] > total and shape[0] % total == 0:
        per_row = values = shape[0] // total
    else:
        raise BadGateway(
            f"the upstream answered a batch of {total} rows with output '{output.name}' of shape "
            f"{list(shape)}; it cannot be split by rows (is the model batched along dim 0?)"
        )
    if contents is None:
        return per_row, [row * values for row in range(total + 1)]
    if output.datatype == _BYTES:
        starts = _element_starts(contents, output.name)
        if len(starts) != total * values + 1:
            raise BadGateway(f"output '{output.name}': its BYTES contents do not fill shape {list(shape)}")
        return per_row, [starts[row * values] for row in range(total + 1)]
    if len(contents) % total:
        raise BadGateway(f"output '{output.name}': {len(contents)} bytes do not divide into {total} rows")
    size = len(contents) // total
    return per_row, [row * size for row in range(total + 1)]


def _element_starts(contents: bytes, name: str) -> list[int]:
    """Offsets of each length-prefixed element of a BYTES tensor, and its end."""
    starts = [0]
    at = 0
    while at < len(contents):
        if at + _PREFIX > len(contents):
            raise BadGateway(f"output '{name}': a BYTES element's length is cut short")
        at += _PREFIX + int.from_bytes(contents[at : at + _PREFIX], "little")
        starts.append(at)
    if at != len(contents):
        raise BadGateway(f"output '{name}': a BYTES element runs past the contents")
    return starts


def _slice_contents(source: Any, target: Any, start: int, end: int) -> None:
    """Typed contents: the same values of whichever field carries them."""
    for field, values in source.ListFields():
        getattr(target, field.name).extend(values[start:end])


def _copy_parameters(source: Any, target: Any) -> None:
    for key, value in source.items():
        target[key].CopyFrom(value)


def _member(payload: Payload) -> GrpcInfer:
    request: Any = payload.request
    assert isinstance(request, GrpcInfer)
    return request


def text_metadata(pairs: Iterable[tuple[str, str | bytes]] | None) -> Pairs:
    """gRPC metadata as the batcher carries headers: binary values base64-encoded, as on the wire."""
    if not pairs:
        return ()
    return tuple(
        (key, value if isinstance(value, str) else base64.b64encode(value).decode("ascii"))
        for key, value in pairs
    )


def member_metadata(answer: BatchAnswer) -> tuple[Metadata, Metadata]:
    """A batch member's (initial, trailing) metadata for its call, `-bin` values as bytes again."""
    return _grpc_metadata(answer.headers), _grpc_metadata(answer.trailers)


def _grpc_metadata(pairs: Pairs) -> Metadata:
    metadata: list[tuple[str, str | bytes]] = []
    for key, value in pairs:
        if not key.endswith("-bin"):
            metadata.append((key, value))
            continue
        try:
            metadata.append((key, base64.b64decode(value, validate=True)))
        except (binascii.Error, ValueError):  # not what text_metadata wrote: not the upstream's to pass on
            continue
    return tuple(metadata)
