"""gRPC metadata <-> the request headers a `RequestContext` holds.

Filters read and edit `ctx.headers` (text values by lower-case name), whatever the front door; a
gRPC call's text metadata fills it. Binary metadata (`-bin` keys) passes to the upstream as sent.
What gRPC itself manages (pseudo-headers, `grpc-*`, `te`, `content-type`, `user-agent`) is never
copied: the outgoing call writes its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Metadata = tuple[tuple[str, str | bytes], ...]

_MANAGED = frozenset(("te", "content-type", "user-agent", "host"))


def _managed(key: str) -> bool:
    return key.startswith((":", "grpc-")) or key in _MANAGED


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


def answer_metadata(pairs: Iterable[tuple[str, str | bytes]] | None) -> Metadata:
    """An upstream's initial or trailing metadata, without what gRPC manages, for the client."""
    if not pairs:
        return ()
    return tuple((key, value) for key, value in pairs if not _managed(key))
