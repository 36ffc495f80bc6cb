"""Translations between turnout's decisions and Envoy's message types, in one place.

The one answer sent per request, a forward decision, is encoded by hand (`encode_forward`): built
through the message classes it cost about 21 us (a `Struct` filled in Python, a message per
header), written as protobuf wire format about 6 us, and about 1.5 us with the part fixed by where
the request goes (the endpoint and cluster headers, the dynamic metadata) encoded once per
destination. Everything else uses the classes.

Reading Envoy's request headers, it is the message classes' field access that costs, not the parse
(about 0.4 us a field against 0.8 us for the whole `ProcessingRequest`): `request_headers` reads
each header's fields once, into the two mappings the exchange starts from.

The per-request services use the protoc-generated classes of Envoy's API (the `xds-protos`
package): parsing a `ProcessingRequest` with request headers takes about 1.3 us with them against
about 480 us with `envoy-data-plane`'s betterproto classes (docs/mesh.md has the measurement), and
grpcio serves protoc classes without a conversion.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc_pb2
from envoy.type.v3 import http_status_pb2

from gateway.core.filters import Response
from gateway.mesh.exchange import Forward

# The endpoint-picker protocol of the Gateway API Inference Extension: the picked endpoint goes in
# this header and, with its fallbacks, in this dynamic-metadata namespace and key.
DESTINATION_HEADER = "x-gateway-destination-endpoint"
DESTINATION_NAMESPACE = "envoy.lb"
# Names the chosen cluster, for an Envoy route that picks its cluster from a header.
CLUSTER_HEADER = "x-turnout-cluster"

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def header_pairs(header_map: Any) -> list[tuple[str, str]]:
    """An Envoy `HeaderMap` as (name, value) pairs; Envoy sends `raw_value` (bytes) or `value`."""
    pairs = []
    for header in header_map.headers:
        raw = header.raw_value
        pairs.append((header.key, raw.decode("latin-1") if raw else header.value))
    return pairs


def request_headers(header_map: Any) -> tuple[dict[str, str], dict[str, str]]:
    """An Envoy `HeaderMap` of a request as (pseudo-headers without the colon, headers by lower-case
    name, repeated headers joined with ", " as the proxy joins them), in one pass."""
    pseudo: dict[str, str] = {}
    headers: dict[str, str] = {}
    for header in header_map.headers:
        raw = header.raw_value
        value = raw.decode("latin-1") if raw else header.value
        name = header.key.lower()
        if name[:1] == ":":
            pseudo[name[1:]] = value
        elif name in headers:
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value
    return pseudo, headers


def header_option(name: str, value: str) -> Any:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, raw_value=value.encode("latin-1")), append_action=_OVERWRITE
    )


def header_mutation(set_headers: Iterable[tuple[str, str]], remove: Iterable[str] = ()) -> Any:
    return ext_proc_pb2.HeaderMutation(
        set_headers=[header_option(name, value) for name, value in set_headers], remove_headers=list(remove)
    )


def http_status(code: int) -> Any:
    return http_status_pb2.HttpStatus(code=code)


def immediate_response(answer: Response) -> Any:
    """A turnout answer (401, 429, a cache hit) as the ext_proc answer Envoy sends the client."""
    return ext_proc_pb2.ProcessingResponse(
        immediate_response=ext_proc_pb2.ImmediateResponse(
            status=http_status(answer.status),
            headers=header_mutation(answer.headers),
            body=answer.body or b"",
        )
    )


# Field numbers of the messages `encode_forward` writes (envoy/service/ext_proc/v3, envoy/config/
# core/v3/base.proto, google/protobuf/struct.proto).
REQUEST_HEADERS_FIELD, REQUEST_BODY_FIELD = 1, 3
_DYNAMIC_METADATA, _MODE_OVERRIDE = 8, 9
# CommonResponse.clear_route_cache = true: field 5, varint, 1.
_CLEAR_ROUTE_CACHE = b"\x28\x01"
# HeaderValueOption.append_action = OVERWRITE_IF_EXISTS_OR_ADD: field 3, varint.
_APPEND_ACTION = b"\x18" + bytes((_OVERWRITE,))


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (protobuf wire type 2) after its encoded tag."""
    size = len(payload)
    return tag + (bytes((size,)) if size < 0x80 else _varint(size)) + payload


def _tag(number: int) -> bytes:
    return _varint(number << 3 | 2)


_T1, _T2, _T3, _T5 = _tag(1), _tag(2), _tag(3), _tag(5)
_METADATA_TAG, _MODE_TAG = _tag(_DYNAMIC_METADATA), _tag(_MODE_OVERRIDE)
_FIELD_TAGS = {field: _tag(field) for field in (REQUEST_HEADERS_FIELD, REQUEST_BODY_FIELD)}
_DESTINATION_KEY = _field(_T1, DESTINATION_HEADER.encode())
_CLUSTER_KEY = _field(_T1, CLUSTER_HEADER.encode())
_NAMESPACE_KEY = _field(_T1, DESTINATION_NAMESPACE.encode())


def _set_header(key: bytes, value: str) -> bytes:
    """HeaderMutation.set_headers: one HeaderValueOption(header=HeaderValue(key, raw_value)); `key`
    is the HeaderValue's encoded key field."""
    return _field(_T1, _field(_T1, key + _field(_T3, value.encode("latin-1"))) + _APPEND_ACTION)


def encode_mode(mode: Any) -> bytes:
    """ProcessingResponse.mode_override, to append to an encoded answer."""
    return _field(_MODE_TAG, mode.SerializeToString())


# A destination's encoded part of the answer, by (cluster, endpoint, fallbacks): a fleet has a few
# of them. Emptied when it reaches this many, so endpoints that discovery adds and drops cannot grow
# it without end; a fleet ten times larger than any we serve still fits.
_DESTINATIONS: dict[tuple[str, str, tuple[str, ...]], tuple[bytes, bytes]] = {}
_MAX_DESTINATIONS = 4096


def _destination(cluster: str, endpoint: str, fallbacks: tuple[str, ...]) -> tuple[bytes, bytes]:
    """The header mutation's entries for the endpoint and the cluster, and the dynamic metadata
    field, encoded once per destination."""
    key = (cluster, endpoint, fallbacks)
    known = _DESTINATIONS.get(key)
    if known is None:
        if len(_DESTINATIONS) >= _MAX_DESTINATIONS:
            _DESTINATIONS.clear()
        headers = _set_header(_DESTINATION_KEY, endpoint) + _set_header(_CLUSTER_KEY, cluster)
        endpoints = ",".join((endpoint, *fallbacks)).encode("latin-1")
        inner = _field(_T1, _DESTINATION_KEY + _field(_T2, _field(_T3, endpoints)))
        metadata = _field(_METADATA_TAG, _field(_T1, _NAMESPACE_KEY + _field(_T2, _field(_T5, inner))))
        known = _DESTINATIONS[key] = (headers, metadata)
    return known


def encode_forward(decision: Forward, field: int, mode_override: bytes = b"") -> bytes:
    """The decision to forward as a serialized ProcessingResponse: in `field` (REQUEST_HEADERS_FIELD
    or REQUEST_BODY_FIELD) a CommonResponse whose header mutation sets the decision's headers, the
    picked endpoint (DESTINATION_HEADER) and the cluster (CLUSTER_HEADER) and removes the removed
    ones, with clear_route_cache; dynamic metadata DESTINATION_NAMESPACE / DESTINATION_HEADER =
    "endpoint,fallback,..."; then the encoded mode override."""
    destination, metadata = _destination(decision.cluster, decision.endpoint, decision.fallbacks)
    mutation = destination
    if decision.set_headers or decision.remove_headers:
        parts = [_set_header(_field(_T1, name.encode("latin-1")), v) for name, v in decision.set_headers]
        parts.append(destination)
        parts.extend(_field(_T2, name.encode("latin-1")) for name in decision.remove_headers)
        mutation = b"".join(parts)
    common = _field(_T1, _field(_T2, mutation) + _CLEAR_ROUTE_CACHE)
    return _field(_FIELD_TAGS[field], common) + metadata + mode_override
