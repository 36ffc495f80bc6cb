"""Header rewriting between client and upstream: hop-by-hop stripping, forwarding headers, tracing.

Everything that can be decided from the config is decided when a route is compiled (`HeaderRules`);
per request this is one pass over the client's headers and one over the upstream's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from random import getrandbits as _random_bits

# RFC 9110 7.6.1 hop-by-hop headers, never forwarded. Framing headers are rewritten by the sender.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    }
)
# Request headers the gateway sets itself (from the client's values where it keeps them).
_SET_BY_GATEWAY = frozenset(
    {
        b"content-length",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-request-id",
        b"traceparent",
    }
)
_REQUEST_SKIP = HOP_BY_HOP | _SET_BY_GATEWAY
# The upstream's x-request-id is relayed: clients match it against the server's own logs. When it
# differs from the gateway's id, that one goes in TURNOUT_REQUEST_ID (see `request_id_lines`).
_RESPONSE_SKIP = HOP_BY_HOP | {b"content-length"}
REQUEST_ID = b"x-request-id"
TURNOUT_REQUEST_ID = b"x-turnout-request-id"

# Longest client-sent request id that is kept; longer ones are replaced (they end up in logs).
MAX_REQUEST_ID_LENGTH = 200


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """Header edits of one route, compiled once: names lower-cased bytes, added headers pre-encoded."""

    remove: frozenset[bytes] = frozenset()
    add: bytes = b""
    """Pre-encoded `name: value\\r\\n` lines."""
    add_pairs: tuple[tuple[bytes, bytes], ...] = ()
    request_skip: frozenset[bytes] = _REQUEST_SKIP
    """Client headers never forwarded upstream: hop-by-hop, set by the gateway, or removed here."""
    response_skip: frozenset[bytes] = _RESPONSE_SKIP
    """Upstream headers never relayed to the client: hop-by-hop, framing, or removed here."""

    @classmethod
    def build(cls, add: Mapping[str, str], remove: Iterable[str]) -> HeaderRules:
        pairs = tuple((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in add.items())
        removed = frozenset(r.lower().encode("latin-1") for r in remove) | frozenset(n for n, _ in pairs)
        added = b"".join(n + b": " + v + b"\r\n" for n, v in pairs)
        return cls(removed, added, pairs, _REQUEST_SKIP | removed, _RESPONSE_SKIP | removed)


def new_request_id() -> str:
    # Ids need to be unique, not secret: the PRNG is several times cheaper than os.urandom.
    return _random_bits(128).to_bytes(16).hex()


def request_id_of(headers: Mapping[str, str]) -> str:
    """The client's x-request-id when it is sane, else a new one."""
    given = headers.get("x-request-id")
    if given and len(given) <= MAX_REQUEST_ID_LENGTH and given.isprintable():
        return given
    return new_request_id()


def next_traceparent(incoming: str) -> str:
    """W3C trace context: keep the trace id and flags, make the gateway's hop a new parent span;
    start a new (unsampled) trace when the client's is invalid. Requests without a traceparent are
    sent without one: without a tracer there is no trace to start."""
    span = f"{_random_bits(64):016x}"
    if len(incoming) == 55 and incoming[2] == "-" and incoming[35] == "-":
        version, trace_id, _, flags = incoming.split("-")
        if version != "ff" and trace_id != "0" * 32:
            return f"{version}-{trace_id}-{span}-{flags}"
    return f"00-{_random_bits(128):032x}-{span}-00"


def build_request_head(
    method: str,
    target: bytes,
    raw_headers: list[tuple[bytes, bytes]],
    headers: Mapping[str, str],
    rules: HeaderRules,
    forwarding: bytes,
    body_length: int | None,
    default_host: str,
    strip: set[str] | None = None,
    add: list[tuple[str, str]] | None = None,
) -> bytes:
    """The request line and headers sent upstream. `forwarding` is the gateway's own lines
    (`forwarding_lines`); `body_length` None means a chunked body. `strip` and `add` are
    per-request edits by filters (credentials removed, claims forwarded)."""
    skip = rules.request_skip
    if strip:
        skip = skip | {name.encode("latin-1") for name in strip}
    connection = headers.get("connection")
    if connection is not None:
        # Headers named in Connection are hop-by-hop too (RFC 9110 7.6.1).
        skip = skip | {t.strip().lower().encode("latin-1") for t in connection.split(",")}
    lines = [method.encode("latin-1") + b" " + target + b" HTTP/1.1\r\n"]
    for name, value in raw_headers:  # a plain loop: a comprehension is a function call in 3.11
        if name.lower() not in skip:
            lines.append(name + b": " + value + b"\r\n")
    if "host" not in headers:
        lines.append(b"host: " + default_host.encode("latin-1") + b"\r\n")
    incoming_trace = headers.get("traceparent")
    if incoming_trace is not None:
        lines.append(b"traceparent: " + next_traceparent(incoming_trace).encode("latin-1") + b"\r\n")
    lines.append(forwarding)
    if rules.add:
        lines.append(rules.add)
    if add:
        lines.extend(f"{name}: {value}\r\n".encode("latin-1") for name, value in add)
    if body_length is None:
        lines.append(b"transfer-encoding: chunked\r\n\r\n")
    elif body_length or method in _METHODS_WITH_BODY:
        lines.append(b"content-length: %d\r\n\r\n" % body_length)
    else:
        lines.append(b"\r\n")
    return b"".join(lines)


_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def forwarding_lines(headers: Mapping[str, str], client_ip: str, proto_line: bytes, request_id: str) -> bytes:
    """x-forwarded-for (the client's chain, then the client), x-forwarded-proto (`proto_line`, made
    once by `forwarded_proto_line`) and x-request-id."""
    forwarded = headers.get("x-forwarded-for")
    xff = f"{forwarded}, {client_ip}" if forwarded else client_ip
    return b"".join(
        (
            b"x-forwarded-for: ",
            xff.encode("latin-1"),
            proto_line,
            b"x-request-id: ",
            request_id.encode("latin-1"),
            b"\r\n",
        )
    )


def forwarded_proto_line(scheme: bytes) -> bytes:
    """The end of the x-forwarded-for line and the whole x-forwarded-proto line."""
    return b"\r\nx-forwarded-proto: " + scheme + b"\r\n"


def relayable_headers(upstream: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers without hop-by-hop and framing headers."""
    return [(n, v) for n, v in upstream if n.lower() not in _RESPONSE_SKIP]


def filterable_headers(upstream: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    """The upstream's response headers as response filters see them (`Response.headers`): without
    hop-by-hop and framing headers, names in lower case, names and values decoded as Latin-1."""
    headers: list[tuple[str, str]] = []
    for name, value in upstream:  # one pass, no intermediate list
        lowered = name.lower()
        if lowered not in _RESPONSE_SKIP:
            headers.append((lowered.decode("latin-1"), value.decode("latin-1")))
    return headers


def filtered_header_lines(
    headers: list[tuple[str, str]],
    rules: HeaderRules,
    request_id: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """`relayed_header_lines` for headers as the response filters left them (`Response.headers`):
    the route's removed headers dropped, its added headers, the request id and `extra` appended.
    Each name and value is encoded once, in the same pass that looks for the upstream's request id."""
    remove = rules.remove
    lines: list[bytes] = []
    upstream_id: bytes | None = None
    for name, value in headers:
        encoded = name.encode("latin-1")
        if encoded in remove:
            continue
        value_bytes = value.encode("latin-1")
        if len(encoded) == 12 and encoded.lower() == REQUEST_ID and upstream_id is None:
            upstream_id = value_bytes
        lines += (encoded, b": ", value_bytes, b"\r\n")
    if upstream_id is None:
        for name_bytes, value_bytes in rules.add_pairs:  # the route may set one itself
            if name_bytes == REQUEST_ID:
                upstream_id = value_bytes
                break
    lines.append(rules.add)
    if upstream_id is None:
        lines += (b"x-request-id: ", request_id, b"\r\n")
    elif upstream_id != request_id:  # the upstream's id is kept for its logs; ours gets its own header
        lines += (b"x-turnout-request-id: ", request_id, b"\r\n")
    if extra:
        for name_bytes, value_bytes in extra:
            lines += (name_bytes, b": ", value_bytes, b"\r\n")
    return b"".join(lines)


def relayed_header_lines(
    upstream: list[tuple[bytes, bytes]],
    rules: HeaderRules,
    request_id: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """The upstream's response headers as relayed to the client, rendered as `name: value\\r\\n`
    lines: hop-by-hop, framing and removed headers dropped; the request id (unless the upstream
    sent one: then the gateway's own in x-turnout-request-id where they differ), the route's added
    headers and `extra` (experiment headers) appended."""
    skip = rules.response_skip
    lines: list[bytes] = []
    upstream_id: bytes | None = None
    for name, value in upstream:
        lowered = name.lower()
        if lowered not in skip:
            if lowered == REQUEST_ID:
                upstream_id = value
            lines += (name, b": ", value, b"\r\n")
    if upstream_id is None:
        lines += (b"x-request-id: ", request_id, b"\r\n")
    elif upstream_id != request_id:
        lines += (b"x-turnout-request-id: ", request_id, b"\r\n")
    lines.append(rules.add)
    if extra:
        for name, value in extra:
            lines += (name, b": ", value, b"\r\n")
    return b"".join(lines)
