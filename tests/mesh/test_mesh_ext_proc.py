"""ext_proc: a grpcio client sends the message sequences Envoy sends and checks turnout's answers."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc

from tests.mesh.mesh_support import (
    V1_ENDPOINTS,
    V2_ENDPOINTS,
    headers,
    mesh_config,
    mutation_headers,
    request_body,
    request_headers,
    response_headers,
)


async def exchange(port: int, messages: list[Any]) -> list[Any]:
    """Send Envoy's messages one at a time, each after the answer to the one before (as Envoy does)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = pb_grpc.ExternalProcessorStub(channel).Process()
        answers = []
        for message in messages:
            await call.write(message)
            answers.append(await asyncio.wait_for(call.read(), 5))
        await call.done_writing()
        return answers


async def test_header_only_decision_picks_an_arm_and_an_endpoint(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        arms: dict[str, str] = {}
        for user in ("u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"):
            first, second = await exchange(
                port,
                [request_headers("/v2/models/risk/infer", [("x-user-id", user)]), response_headers(200)],
            )
            assert first.WhichOneof("response") == "request_headers"
            picked = mutation_headers(first.request_headers.response)
            endpoint = picked["x-gateway-destination-endpoint"]
            cluster = picked["x-turnout-cluster"]
            assert endpoint in (V1_ENDPOINTS if cluster == "risk-v1" else V2_ENDPOINTS)
            metadata = first.dynamic_metadata.fields["envoy.lb"].struct_value.fields
            assert metadata["x-gateway-destination-endpoint"].string_value.split(",")[0] == endpoint
            # The response path carries the experiment's headers, as the proxy's answers do.
            added = mutation_headers(second.response_headers.response)
            assert added["x-turnout-experiment"] == "risk-ab"
            arms[user] = added["x-turnout-arm"]
            assert (cluster == "risk-v1") == (arms[user] == "control")
        assert set(arms.values()) == {"control", "treatment"}
        # Sticky, and the same arm the proxy's split gives the same user.
        split = gateway.experiments.splits["risk-ab"]
        for user, arm in arms.items():
            assert split.arm_of(user) == arm
            again = await exchange(port, [request_headers("/x", [("x-user-id", user)])])
            assert (
                mutation_headers(again[0].request_headers.response)["x-turnout-cluster"] == "risk-v1"
            ) == (arm == "control")
        # Every finished request released its endpoint. The server sees a stream's end after the
        # client's last write returns, so the last release may still be on its way: wait for it.
        endpoints = [e for cluster in gateway.runtime.clusters.values() for e in cluster.endpoints.endpoints]
        for _ in range(100):  # 100 x 20 ms: far above the release's latency on a busy machine
            if all(e.inflight == 0 for e in endpoints):
                break
            await asyncio.sleep(0.02)
        assert [(e.address, e.inflight) for e in endpoints if e.inflight] == []


async def test_filters_answer_with_immediate_responses_and_rewrite(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        (missing,) = await exchange(port, [request_headers("/limited/v2/models/x/infer")])
        assert missing.immediate_response.status.code == 401
        answers = []
        for _ in range(4):
            (answer,) = await exchange(
                port, [request_headers("/limited/v2/models/x/infer", [("x-api-key", "k1")])]
            )
            answers.append(answer)
        allowed = [a for a in answers if a.WhichOneof("response") == "request_headers"]
        assert len(allowed) == 3  # burst 3, then the proxy's own limiter says 429
        assert answers[3].immediate_response.status.code == 429
        picked = mutation_headers(allowed[0].request_headers.response)
        assert picked[":path"] == "/v2/models/x/infer"  # the route's rewrite
        assert picked["x-gateway-destination-endpoint"] in V1_ENDPOINTS


async def test_a_buffered_body_reaches_the_filters(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path, request_body={"checked": "buffered"})
    async with make_gateway(config) as gateway:
        port = gateway.mesh.port
        path = "/v2/models/checked/infer"
        bad = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}'
        first, second = await exchange(
            port, [request_headers(path, end_of_stream=False), request_body(bad, end_of_stream=True)]
        )
        mode = first.mode_override.request_body_mode
        assert mode == first.mode_override.BUFFERED
        assert second.immediate_response.status.code == 400
        good = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
        answers = await exchange(
            port,
            [request_headers(path, end_of_stream=False), request_body(good, end_of_stream=True)],
        )
        picked = mutation_headers(answers[1].request_body.response)
        assert picked["x-gateway-destination-endpoint"] in V1_ENDPOINTS


@pytest.mark.parametrize(
    "messages",
    [
        [request_body(b"x", end_of_stream=True)],
        [response_headers(200)],
        [request_headers("/x"), request_headers("/x")],
        [
            request_headers("/x", end_of_stream=False),
            pb.ProcessingRequest(response_headers=pb.HttpHeaders(headers=headers([(":status", "x")]))),
        ],
    ],
    ids=["body-first", "response-first", "headers-twice", "bad-status"],
)
async def test_out_of_order_messages_end_the_stream_cleanly(
    make_gateway: Any, tmp_path: Path, messages: list[Any]
) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await exchange(port, messages)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # The server keeps serving, and nothing stays in flight.
        (answer,) = await exchange(port, [request_headers("/x", [("x-user-id", "u1")])])
        assert answer.WhichOneof("response") == "request_headers"


async def test_malformed_bytes_and_cancelled_streams(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.stream_stream(
                "/envoy.service.ext_proc.v3.ExternalProcessor/Process",
                request_serializer=lambda b: b,
                response_deserializer=lambda b: b,
            )
            call = raw()
            await call.write(b"\xff\xff\xff")  # not a ProcessingRequest
            with pytest.raises(grpc.aio.AioRpcError):
                await asyncio.wait_for(call.read(), 5)
            # A stream cancelled after the decision, before the response: the endpoint is released.
            stub = pb_grpc.ExternalProcessorStub(channel)
            call = stub.Process()
            await call.write(request_headers("/x", [("x-user-id", "u1")]))
            await asyncio.wait_for(call.read(), 5)
            call.cancel()
        for _ in range(50):
            if all(e.inflight == 0 for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints):
                break
            await asyncio.sleep(0.05)
        assert all(e.inflight == 0 for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints)
        (answer,) = await exchange(port, [request_headers("/x", [("x-user-id", "u2")])])
        assert answer.WhichOneof("response") == "request_headers"


def test_no_body_mode_is_a_plain_continue() -> None:
    assert pb.ProcessingResponse(request_body=pb.BodyResponse()).WhichOneof("response") == "request_body"


async def test_outcomes_are_recorded_only_for_answers_turnout_saw(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        recorder = gateway.experiments.recorder
        before = recorder.stats().accepted
        # Exposure and outcome: the response headers came back through ext_proc.
        await exchange(port, [request_headers("/x", [("x-user-id", "u1")]), response_headers(503)])
        assert recorder.stats().accepted == before + 2
        # Envoy's mode skips the response headers: an exposure, and no outcome nobody saw.
        await exchange(port, [request_headers("/x", [("x-user-id", "u2")])])
        for _ in range(50):
            if all(e.inflight == 0 for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints):
                break
            await asyncio.sleep(0.02)
        assert recorder.stats().accepted == before + 3
        endpoints = [e for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints]
        assert all(e.inflight == 0 for e in endpoints)
        assert sum(e.total_failures for e in endpoints) == 1  # the 503 counted against its endpoint


async def test_load_reports_in_answers_steer_least_queue(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path)
    config["clusters"]["risk-v1"]["balancer"] = "least_queue"
    async with make_gateway(config) as gateway:
        port = gateway.mesh.port
        split = gateway.experiments.splits["risk-ab"]
        users = [f"u{i}" for i in range(40) if split.arm_of(f"u{i}") == "control"][:6]
        first, _ = await exchange(
            port,
            [
                request_headers("/x", [("x-user-id", users[0])]),
                response_headers(200, [("x-turnout-queue-depth", "40")]),
            ],
        )
        busy = mutation_headers(first.request_headers.response)["x-gateway-destination-endpoint"]
        assert gateway.runtime.clusters["risk-v1"].endpoints.get(busy).queue_depth == 40
        for user in users[1:]:
            (answer,) = await exchange(port, [request_headers("/x", [("x-user-id", user)])])
            assert mutation_headers(answer.request_headers.response)["x-gateway-destination-endpoint"] != busy


def response_body(body: bytes) -> Any:
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=True))


async def test_cache_fills_from_the_response_body_and_answers_hits(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path)
    cached = {"name": "cached", "match": {"prefix": "/cached/"}, "backend": {"cluster": "risk-v1"}}
    config["routes"].insert(0, {**cached, "filters": [{"cache": {"ttl": "60s"}}]})
    async with make_gateway(config) as gateway:
        port = gateway.mesh.port
        path = "/cached/v2/models/m/infer"
        miss = await exchange(
            port,
            [
                request_headers(path, end_of_stream=False),
                request_body(b'{"inputs": 1}', end_of_stream=True),
                pb.ProcessingRequest(
                    response_headers=pb.HttpHeaders(
                        headers=headers([(":status", "200"), ("content-type", "application/json")])
                    )
                ),
                response_body(b'{"outputs": 2}'),
            ],
        )
        # The route reads both bodies: turnout asks Envoy for them.
        override = miss[0].mode_override
        assert (override.request_body_mode, override.response_body_mode) == (
            override.BUFFERED,
            override.BUFFERED,
        )
        assert "x-gateway-destination-endpoint" in mutation_headers(miss[1].request_body.response)
        assert miss[2].WhichOneof("response") == "response_headers"
        assert miss[3].WhichOneof("response") == "response_body"
        hit = await exchange(
            port,
            [request_headers(path, end_of_stream=False), request_body(b'{"inputs": 1}', end_of_stream=True)],
        )
        assert hit[1].immediate_response.status.code == 200
        assert hit[1].immediate_response.body == b'{"outputs": 2}'
        other = await exchange(
            port,
            [request_headers(path, end_of_stream=False), request_body(b'{"inputs": 3}', end_of_stream=True)],
        )
        assert other[1].WhichOneof("response") == "request_body"
        assert all(e.inflight <= 1 for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints)


async def test_experiment_output_metrics_ask_for_the_answer_body(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path)
    config["experiments"]["risk-ab"]["metrics"] = ["latency", "output:label"]
    async with make_gateway(config) as gateway:
        recorder = gateway.experiments.recorder
        before = recorder.stats().accepted
        answer = b'{"outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}]}'
        first, second, third = await exchange(
            gateway.mesh.port,
            [request_headers("/x", [("x-user-id", "u1")]), response_headers(200), response_body(answer)],
        )
        assert first.mode_override.response_body_mode == first.mode_override.BUFFERED
        assert second.WhichOneof("response") == "response_headers"
        assert mutation_headers(third.response_body.response)["x-turnout-experiment"] == "risk-ab"
        assert recorder.stats().accepted == before + 2  # exposure and outcome
