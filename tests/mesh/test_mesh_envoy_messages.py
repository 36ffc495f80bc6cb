"""The hand-encoded forward decision is the ProcessingResponse the message classes would build."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from gateway.mesh.envoy_messages import (
    REQUEST_BODY_FIELD,
    REQUEST_HEADERS_FIELD,
    encode_forward,
    encode_mode,
)
from gateway.mesh.exchange import Forward

_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def by_the_classes(
    decision: Forward, field: int, mode: processing_mode_pb2.ProcessingMode | None
) -> pb.ProcessingResponse:
    set_headers = [
        *decision.set_headers,
        ("x-gateway-destination-endpoint", decision.endpoint),
        ("x-turnout-cluster", decision.cluster),
    ]
    mutation = pb.HeaderMutation(
        set_headers=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=name, raw_value=value.encode("latin-1")),
                append_action=_OVERWRITE,
            )
            for name, value in set_headers
        ],
        remove_headers=decision.remove_headers,
    )
    metadata = struct_pb2.Struct()
    endpoints = ",".join((decision.endpoint, *decision.fallbacks))
    metadata.update({"envoy.lb": {"x-gateway-destination-endpoint": endpoints}})
    answer = pb.ProcessingResponse(dynamic_metadata=metadata)
    common = (
        answer.request_headers.response if field == REQUEST_HEADERS_FIELD else answer.request_body.response
    )
    common.header_mutation.CopyFrom(mutation)
    common.clear_route_cache = True
    if mode is not None:
        answer.mode_override.CopyFrom(mode)
    return answer


@pytest.mark.parametrize("field", [REQUEST_HEADERS_FIELD, REQUEST_BODY_FIELD])
@pytest.mark.parametrize(
    "decision",
    [
        Forward("risk-v1", "127.0.0.1:8011", (), [], []),
        Forward(
            "risk-v2",
            "10.0.0.7:9000",
            ("10.0.0.8:9000", "10.0.0.9:9000"),
            [(":path", "/v2/" + "m" * 300), ("x-principal", "alicé")],  # a length over 127: 2 bytes
            ["x-api-key", "authorization"],
        ),
    ],
    ids=["plain", "rewritten"],
)
@pytest.mark.parametrize("with_mode", [False, True])
def test_encoded_forward_equals_the_classes(decision: Forward, field: int, with_mode: bool) -> None:
    mode = (
        processing_mode_pb2.ProcessingMode(request_body_mode=1, response_body_mode=2) if with_mode else None
    )
    encoded = encode_forward(decision, field, b"" if mode is None else encode_mode(mode))
    assert pb.ProcessingResponse.FromString(encoded) == by_the_classes(decision, field, mode)
