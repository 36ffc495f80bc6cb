"""gRPC metadata <-> the request headers a `RequestContext` holds.

Filters read and edit `ctx.headers` (text values by lower-case name), whatever the front door; a
gRPC call's text metadata fills it. Binary metadata (`-bin` keys) passes to the upstream as sent.
What gRPC itself manages (pseudo-headers, `grpc-*`, `te`, `content-type`, `user-agent`) is never
copied: the outgoing call writes its own.

The upstream call carries what a REST request's head carries from the gateway: the request id (the
client's when sane, else the gateway's own) in `x-request-id`, the client's address appended to the
`x-forwarded-for` chain it sent, and the trace context in
`traceparent`: the attempt span's when tracing is on (the relay adds it per attempt), else the
client's continued with a new parent id, as `gateway/http/headers.py` does for HTTP/1.1.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.http.headers import next_traceparent

Metadata = tuple[tuple[str, str | bytes], ...]

_MANAGED = frozenset(("te", "content-type", "user-agent", "host"))
# What the gateway writes itself on the upstream call, whatever the client or a filter set.
_WRITTEN = _MANAGED | {"x-request-id", "traceparent", "x-forwarded-for"}


def _managed(key: str) -> bool:
    return key.startswith((":", "grpc-")) or key in _MANAGED


def _written(key: str) -> bool:
    return key.startswith((":", "grpc-")) or key in _WRITTEN


def split_metadata(pairs: Iterable[tuple[str, str | bytes]]) -> tuple[dict[str, str], Metadata]:
    """(text metadata by name, repeated keys joined with ", " as HTTP headers are; binary metadata)."""
    headers: dict[str, str] = {}
    binary: list[tuple[str, str | bytes]] = []
    for key, value in pairs:
        if isinstance(value, bytes):
            binary.append((key, value))
        elif key in headers:
            headers[key] = f"{headers[key]}, {value}"
        else:
            headers[key] = value
    return headers, tuple(binary)


def outgoing_metadata(headers: Mapping[str, str], binary: Metadata) -> Metadata:
    """The metadata the upstream call carries: the headers as the filters left them, and the
    client's binary metadata."""
    text = tuple((key, value) for key, value in headers.items() if not _managed(key))
    return text + binary


def relayed_metadata(
    headers: Mapping[str, str], binary: Metadata, request_id: str, traced: bool, client_ip: str
) -> Metadata:
    """The metadata a relayed call carries upstream: the headers as the filters left them, the
    client's binary metadata, the call's `request_id`, `x-forwarded-for` (the client's chain, then
    `client_ip`, as a REST request's head has it) and, when not `traced` (no attempt span to name),
    the client's traceparent continued; a `traced` call's attempt adds its span's own."""
    text = tuple((key, value) for key, value in headers.items() if not _written(key))
    forwarded = headers.get("x-forwarded-for")
    chain = f"{forwarded}, {client_ip}" if forwarded and client_ip else forwarded or client_ip
    own: Metadata = (
        (("x-request-id", request_id), ("x-forwarded-for", chain))
        if chain
        else (("x-request-id", request_id),)
    )
    incoming = headers.get("traceparent")
    if incoming is not None and not traced:
        own += (("traceparent", next_traceparent(incoming)),)
    return text + binary + own


def answer_metadata(pairs: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    """An upstream's initial or trailing metadata, without what gRPC manages, for the client."""
    if not pairs:
        return ()
    return tuple((key, value) for key, value in pairs if not _managed(key))
