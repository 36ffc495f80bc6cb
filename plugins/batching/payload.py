"""What the batcher needs from a request, whatever its protocol: its rows and what it may merge with.

A `BatchFormat` (one per wire protocol) turns a parsed request into a `Payload`, merges the payloads
of one batch into a single upstream body, and splits the upstream's answer back into one body per
member. Two requests share a batch only when their signatures are equal: the same input names,
datatypes and non-batch dimensions, the same requested outputs and the same parameters, so the
merged request means exactly what each member asked for, without padding.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.core.protocols.kserve_v1 import V1Request
from gateway.core.protocols.oip_v2 import InferRequest, Parameters

BatchableRequest = InferRequest | V1Request


@dataclass(frozen=True, slots=True)
class EncodedBatch:
    """One upstream request body for a whole batch."""

    body: bytes
    content_type: str
    headers: dict[str, str]
    """Inference-Header-Content-Length when binary tensors follow the JSON; else empty."""


@dataclass(frozen=True, slots=True)
class Payload:
    """A checked request, ready to queue: its row count and its compatibility signature."""

    request: BatchableRequest
    rows: int
    signature: Hashable
    format: BatchFormat
    original: EncodedBatch | None = None
    """The request as its caller sent it, when known: a batch of this request alone goes upstream
    as is, and its answer comes back as the upstream gave it, with nothing to merge or split."""


@dataclass(frozen=True, slots=True)
class MemberBody:
    """One member's share of a batched answer, encoded as that member asked."""

    headers: tuple[tuple[str, str], ...]
    body: bytes


class BatchFormat(Protocol):
    """Merging and splitting for one wire protocol. Stateless; built once per batcher."""

    def prepare(self, request: Any, original: EncodedBatch | None = None) -> Payload:
        """Check that the request can join a batch; raises BadRequest with the reason otherwise.
        `original` is the request's body as sent, if the caller has it (see `Payload.original`)."""
        ...

    def merge(self, payloads: Sequence[Payload], binary: bool = True) -> EncodedBatch:
        """Concatenate the members' inputs along dim 0, in order, into one request body; `binary`
        False keeps it JSON whatever the format's own option says (the server takes no binary)."""
        ...

    def split(self, headers: Mapping[str, str], body: bytes, payloads: Sequence[Payload]) -> list[MemberBody]:
        """Cut a successful answer (lower-case `headers`) into one body per member, in order;
        raises BadGateway when the answer cannot be split by the members' row counts."""
        ...


def parameters_signature(parameters: Parameters) -> tuple[tuple[str, str, Any], ...]:
    """Parameters as a hashable value. The type name is part of it because True == 1 in Python,
    while `true` and `1` are different parameters on the wire."""
    return tuple(sorted((key, type(value).__name__, value) for key, value in parameters.items()))
