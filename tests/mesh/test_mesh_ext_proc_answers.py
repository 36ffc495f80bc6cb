"""ext_proc on the answer's side: a gRPC answer's grpc-status as its outcome, and the answer's body
in the mode a route declares, in the message sequences Envoy sends."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from experiments.events import Outcome
from tests.mesh.mesh_support import headers, mesh_config, mutation_headers, request_headers, response_headers
from tests.mesh.test_mesh_ext_proc import exchange
from tests.mesh.test_mesh_ext_proc_sequences import kinds, nothing_in_flight, response_body, response_trailers

GRPC = [("content-type", "application/grpc"), ("te", "trailers")]
INFER = "/inference.GRPCInferenceService/ModelInfer"


def grpc_request(request_id: str, user: str = "u1") -> Any:
    return request_headers(INFER, [*GRPC, ("x-user-id", user), ("x-request-id", request_id)])


def answer_head(status: int = 200, extra: list[tuple[str, str]] = (), *, end_of_stream: bool = False) -> Any:  # type: ignore[assignment]
    pairs = [(":status", str(status)), ("content-type", "application/grpc"), *extra]
    return pb.ProcessingRequest(
        response_headers=pb.HttpHeaders(headers=headers(pairs), end_of_stream=end_of_stream)
    )


async def outcomes(gateway: Any, count: int) -> dict[str, Any]:
    """The experiment's outcomes by request id (queued or stored: the recorder writes in the
    background), once `count` are there."""
    service = gateway.experiments
    found: dict[str, Any] = {}
    for _ in range(100):  # 100 x 20 ms: a stream's end reaches the server after the client's
        stored = await service.store.export_rows("risk-ab", "outcomes")
        found = {row["request_id"]: (row["status"], row["error"], str(row["outputs"])) for row in stored}
        for event in service.recorder.queued():
            if isinstance(event, Outcome):
                found[event.request_id] = (event.status, event.error, str(event.outputs))
        if len(found) >= count:
            break
        await asyncio.sleep(0.02)
    return found


def route_statuses(gateway: Any, name: str) -> list[int]:
    """The route's request counts by status class (1xx .. 5xx)."""
    (route,) = [route for route in gateway.runtime.routes if route.name == name]
    return list(route.metrics.requests)


async def test_a_grpc_answers_status_is_its_grpc_status(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        port = gateway.mesh.port
        # A gRPC request: the decision asks Envoy for the response trailers, where grpc-status is.
        failed = await exchange(
            port,
            [
                grpc_request("r-unavailable"),
                answer_head(),
                response_trailers([("grpc-status", "14"), ("grpc-message", "worker%20down")]),
            ],
        )
        override = failed[0].mode_override
        assert override.response_trailer_mode == override.SEND
        assert (override.request_body_mode, override.response_body_mode) == (override.NONE, override.NONE)
        assert kinds(failed) == ["request_headers", "response_headers", "response_trailers"]
        # The experiment's headers still go with the head.
        assert mutation_headers(failed[1].response_headers.response)["x-turnout-experiment"] == "risk-ab"
        # Trailers-only (no body, the code in the head), and a call that went well.
        await exchange(port, [grpc_request("r-not-found"), answer_head(extra=[("grpc-status", "5")])])
        await exchange(port, [grpc_request("r-ok"), answer_head(), response_trailers([("grpc-status", "0")])])
        # Trailers without grpc-status broke the protocol: UNKNOWN, as gRPC clients see it.
        await exchange(
            port, [grpc_request("r-missing"), answer_head(), response_trailers([("x-other", "1")])]
        )
        rows = await outcomes(gateway, 4)
        assert rows["r-unavailable"][:2] == (503, True)
        assert rows["r-not-found"][:2] == (404, True)
        assert rows["r-ok"][:2] == (200, False)
        assert rows["r-missing"][:2] == (500, True)
        assert route_statuses(gateway, "risk")[1:] == [1, 0, 1, 2]  # 2xx, 3xx, 4xx, 5xx
        # UNAVAILABLE and UNKNOWN say the server failed: their endpoints are charged; NOT_FOUND not.
        endpoints = [e for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints]
        assert sum(e.total_failures for e in endpoints) == 2
        await nothing_in_flight(gateway)


async def test_a_grpc_answer_whose_trailers_never_come_keeps_its_heads_status(
    make_gateway: Any, tmp_path: Path
) -> None:
    async with make_gateway(mesh_config(tmp_path)) as gateway:
        # Envoy's config skips the trailers despite the override (allow_mode_override off):
        # the stream ends after the head, and the head's status is all there is to record.
        answers = await exchange(gateway.mesh.port, [grpc_request("r-head"), answer_head()])
        assert kinds(answers) == ["request_headers", "response_headers"]
        rows = await outcomes(gateway, 1)
        assert rows["r-head"][:2] == (200, False)
        await nothing_in_flight(gateway)


async def test_a_streamed_answer_is_answered_chunk_by_chunk_and_studied_whole(
    make_gateway: Any, tmp_path: Path
) -> None:
    config = mesh_config(tmp_path, response_body={"risk": "streamed"})
    config["experiments"]["risk-ab"]["metrics"] = ["latency", "output:label"]
    answer = (
        b'{"model_name": "m", "outputs": [{"name": "label", "shape": [1], "datatype": "INT64", "data": [1]}]}'
    )
    async with make_gateway(config) as gateway:
        answers = await exchange(
            gateway.mesh.port,
            [
                request_headers("/x", [("x-user-id", "u1"), ("x-request-id", "r-streamed")]),
                response_headers(200),
                response_body(answer[:30], end_of_stream=False),
                response_body(answer[30:], end_of_stream=True),
            ],
        )
        override = answers[0].mode_override
        assert override.response_body_mode == override.STREAMED
        assert override.response_trailer_mode == override.DEFAULT  # not a gRPC request
        # The head is answered at once, with the experiment's headers (Envoy sends it on now).
        assert kinds(answers) == ["request_headers", "response_headers", "response_body", "response_body"]
        assert mutation_headers(answers[1].response_headers.response)["x-turnout-arm"] in (
            "control",
            "treatment",
        )
        for chunk in answers[2:]:
            assert not chunk.response_body.HasField("response")  # CONTINUE, nothing changed
        # The experiment's output metric read the whole answer, at its end.
        rows = await outcomes(gateway, 1)
        assert rows["r-streamed"][:2] == (200, False)
        assert "label" in rows["r-streamed"][2]
        await nothing_in_flight(gateway)


async def test_a_cache_fills_from_a_streamed_answer(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path, response_body={"cached": "streamed"})
    cached = {"name": "cached", "match": {"prefix": "/cached/"}, "backend": {"cluster": "risk-v1"}}
    config["routes"].insert(0, {**cached, "filters": [{"cache": {"ttl": "60s"}}]})
    path = "/cached/v2/models/m/infer"
    request = [request_headers(path, end_of_stream=False), _request_body(b'{"inputs": 1}')]
    async with make_gateway(config) as gateway:
        port = gateway.mesh.port
        miss = await exchange(
            port,
            [
                *request,
                response_headers(200),
                response_body(b'{"outputs"', end_of_stream=False),
                response_body(b": 2}", end_of_stream=True),
            ],
        )
        override = miss[0].mode_override
        assert (override.request_body_mode, override.response_body_mode) == (
            override.BUFFERED,
            override.STREAMED,
        )
        assert kinds(miss) == [
            "request_headers",
            "request_body",
            "response_headers",
            "response_body",
            "response_body",
        ]
        # The cache stored the whole answer at its end: the same request is now a hit.
        hit = await exchange(port, request)
        assert hit[1].immediate_response.status.code == 200
        assert hit[1].immediate_response.body == b'{"outputs": 2}'
        await nothing_in_flight(gateway)


async def test_a_streamed_grpc_answer_ends_at_its_trailers(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path, response_body={"risk": "streamed"})
    async with make_gateway(config) as gateway:
        answers = await exchange(
            gateway.mesh.port,
            [
                grpc_request("r-stream"),
                answer_head(),
                response_body(b"\x00\x00\x00\x00\x02\x08\x01", end_of_stream=False),
                response_body(b"\x00\x00\x00\x00\x02\x08\x02", end_of_stream=False),
                response_trailers([("grpc-status", "8"), ("grpc-message", "quota")]),
            ],
        )
        override = answers[0].mode_override
        assert (override.response_body_mode, override.response_trailer_mode) == (
            override.STREAMED,
            override.SEND,
        )
        assert kinds(answers) == [
            "request_headers",
            "response_headers",
            "response_body",
            "response_body",
            "response_trailers",
        ]
        rows = await outcomes(gateway, 1)
        assert rows["r-stream"][:2] == (429, True)  # RESOURCE_EXHAUSTED
        await nothing_in_flight(gateway)


async def test_a_route_may_decline_the_answers_body(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path, response_body={"risk": "none"})
    config["experiments"]["risk-ab"]["metrics"] = ["latency", "output:label"]
    async with make_gateway(config) as gateway:
        answers = await exchange(
            gateway.mesh.port, [request_headers("/x", [("x-user-id", "u1")]), response_headers(200)]
        )
        # Declared none: no override asks for the body, and the head is answered at once.
        assert not answers[0].HasField("mode_override")
        assert kinds(answers) == ["request_headers", "response_headers"]
        await nothing_in_flight(gateway)


def _request_body(body: bytes) -> Any:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=body, end_of_stream=True))


async def test_a_route_may_decline_the_request_body(make_gateway: Any, tmp_path: Path) -> None:
    # "checked" validates bodies, so it asks for them by default; declared none, it is decided on
    # its headers, without the filter that would have read the body.
    config = mesh_config(tmp_path, request_body={"checked": "none"})
    async with make_gateway(config) as gateway:
        (answer,) = await exchange(
            gateway.mesh.port, [request_headers("/v2/models/checked/infer", end_of_stream=False)]
        )
        assert not answer.HasField("mode_override")
        assert "x-gateway-destination-endpoint" in mutation_headers(answer.request_headers.response)
        await nothing_in_flight(gateway)
