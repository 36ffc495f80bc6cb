"""The mesh benchmark's load generator against a real mesh port: every stream answered, in both the
mesh transport and grpcio's (a connection opened with ADS), at a fixed rate as asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import _grpc_load
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse

from tests.mesh.mesh_support import mesh_config, request_headers

PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def is_decision(message: bytes) -> bool:
    return bool(ProcessingResponse.FromString(message).WhichOneof("response") == "request_headers")


async def test_every_stream_is_answered_on_both_transports(make_gateway: Any, tmp_path: Path) -> None:
    messages = [request_headers("/x", [("x-user-id", f"u{i}")]).SerializeToString() for i in range(20)]
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        for opening in (None, ADS):
            run = await _grpc_load.closed_loop(
                "127.0.0.1",
                port,
                PROCESS,
                messages,
                seconds=0.5,
                concurrency=8,
                sample=1,
                check=is_decision,
                opening=opening,
            )
            assert run.answered > 0
            assert (run.errors, run.wrong) == (0, 0)
            assert len(run.latencies) == run.answered
        paced = await _grpc_load.paced(
            "127.0.0.1", port, PROCESS, messages, seconds=0.5, rate=100, sample=1, check=is_decision
        )
        assert (paced.answered, paced.errors, paced.wrong) == (50, 0, 0)
        # Not an ext_proc path: a trailers-only error answer, counted as an error.
        refused = await _grpc_load.closed_loop(
            "127.0.0.1", port, "/no.Such/Method", messages, seconds=0.2, concurrency=2, opening=PROCESS
        )
        assert refused.answered == 0 and refused.errors > 0
