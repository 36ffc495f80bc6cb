"""ext_proc: STREAMED bodies and trailers, in the message sequences Envoy sends, and the sequences
that break the protocol's order."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

from tests.mesh.mesh_support import (
    V1_ENDPOINTS,
    headers,
    mesh_config,
    mutation_headers,
    request_body,
    request_headers,
    response_headers,
)
from tests.mesh.test_mesh_ext_proc import exchange

CHECKED = "/v2/models/checked/infer"
# One input of shape [1] with one value: valid. Shape [2] with one value: the validate filter's 400.
GOOD = b'{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}]}'
BAD = b'{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}'


def request_trailers(pairs: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]
    return pb.ProcessingRequest(request_trailers=pb.HttpTrailers(trailers=headers(list(pairs))))


def response_trailers(pairs: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]
    return pb.ProcessingRequest(response_trailers=pb.HttpTrailers(trailers=headers(list(pairs))))


def response_body(body: bytes, *, end_of_stream: bool = True) -> Any:
    return pb.ProcessingRequest(response_body=pb.HttpBody(body=body, end_of_stream=end_of_stream))


def kinds(answers: list[Any]) -> list[str | None]:
    return [answer.WhichOneof("response") for answer in answers]


async def nothing_in_flight(gateway: Any) -> None:
    """Every stream's request released its endpoint. The server sees a stream's end after the
    client's last write returns, so the last release may still be on its way: wait for it."""
    endpoints = [e for c in gateway.runtime.clusters.values() for e in c.endpoints.endpoints]
    for _ in range(250):  # 250 x 20 ms: far above the release's latency on a busy machine
        if all(e.inflight == 0 for e in endpoints):
            break
        await asyncio.sleep(0.02)
    assert [(e.address, e.inflight) for e in endpoints if e.inflight] == []


async def test_streamed_body_is_decided_on_the_headers_and_answered_chunk_by_chunk(
    make_gateway: Any, tmp_path: Path
) -> None:
    async with make_gateway(mesh_config(tmp_path, request_body={"checked": "streamed"})) as gateway:
        port = gateway.mesh.port
        answers = await exchange(
            port,
            [
                request_headers(CHECKED, end_of_stream=False),
                request_body(GOOD[:10], end_of_stream=False),
                request_body(GOOD[10:30], end_of_stream=False),
                request_body(GOOD[30:], end_of_stream=True),
                response_headers(200),
            ],
        )
        assert kinds(answers) == ["request_headers", *["request_body"] * 3, "response_headers"]
        # Envoy sends the headers upstream once they are answered: the endpoint is picked on them.
        first = answers[0]
        assert first.mode_override.request_body_mode == first.mode_override.STREAMED
        picked = mutation_headers(first.request_headers.response)
        assert picked["x-gateway-destination-endpoint"] in V1_ENDPOINTS
        for chunk in answers[1:4]:
            assert not chunk.request_body.HasField("response")  # CONTINUE, nothing changed
        # The validating filter reads the whole body: a bad one is refused at its last chunk,
        # before that chunk goes upstream.
        refused = await exchange(
            port,
            [
                request_headers(CHECKED, end_of_stream=False),
                request_body(BAD[:25], end_of_stream=False),
                request_body(BAD[25:], end_of_stream=True),
            ],
        )
        assert kinds(refused) == ["request_headers", "request_body", "immediate_response"]
        assert refused[2].immediate_response.status.code == 400
        await nothing_in_flight(gateway)


async def test_request_trailers_end_a_streamed_body(make_gateway: Any, tmp_path: Path) -> None:
    async with make_gateway(mesh_config(tmp_path, request_body={"checked": "streamed"})) as gateway:
        port = gateway.mesh.port
        for body, last in ((GOOD, "request_trailers"), (BAD, "immediate_response")):
            answers = await exchange(
                port,
                [
                    request_headers(CHECKED, end_of_stream=False),
                    request_body(body[:20], end_of_stream=False),
                    request_body(body[20:], end_of_stream=False),
                    request_trailers([("x-checksum", "1")]),
                ],
            )
            assert kinds(answers) == ["request_headers", "request_body", "request_body", last]
        await nothing_in_flight(gateway)


async def test_buffered_body_followed_by_trailers_and_response_trailers(
    make_gateway: Any, tmp_path: Path
) -> None:
    async with make_gateway(mesh_config(tmp_path, request_body={"checked": "buffered"})) as gateway:
        answers = await exchange(
            gateway.mesh.port,
            [
                request_headers(CHECKED, end_of_stream=False),
                # BUFFERED with trailers: the one body message does not end the stream.
                request_body(GOOD, end_of_stream=False),
                request_trailers(),
                response_headers(200),
                response_body(b"\x00\x00\x00\x00\x00", end_of_stream=False),
                response_trailers([("grpc-status", "0")]),
            ],
        )
        assert kinds(answers) == [
            "request_headers",
            "request_body",
            "request_trailers",
            "response_headers",
            "response_body",
            "response_trailers",
        ]
        picked = mutation_headers(answers[1].request_body.response)
        assert picked["x-gateway-destination-endpoint"] in V1_ENDPOINTS
        assert mutation_headers(answers[3].response_headers.response) == {}
        await nothing_in_flight(gateway)


async def test_response_trailers_of_a_header_only_route(make_gateway: Any, tmp_path: Path) -> None:
    config = mesh_config(tmp_path)
    config["experiments"]["risk-ab"]["metrics"] = ["latency", "output:label"]
    async with make_gateway(config) as gateway:
        recorder = gateway.experiments.recorder
        before = recorder.stats().accepted
        # The experiment reads the answer's body, so its head is held; a gRPC answer that ends in
        # trailers without a body gets its response phase, and its outcome, at the trailers.
        answers = await exchange(
            gateway.mesh.port,
            [
                request_headers("/x", [("x-user-id", "u1")]),
                response_headers(200),
                response_trailers([("grpc-status", "0")]),
            ],
        )
        assert kinds(answers) == ["request_headers", "response_headers", "response_trailers"]
        for _ in range(100):  # the recorder counts on the event loop: 100 x 20 ms is ample
            if recorder.stats().accepted == before + 2:
                break
            await asyncio.sleep(0.02)
        assert recorder.stats().accepted == before + 2  # exposure and outcome
        await nothing_in_flight(gateway)


@pytest.mark.parametrize(
    ("path", "messages"),
    [
        ("/x", [request_trailers()]),
        ("/x", [pb.ProcessingRequest()]),
        ("/x", [request_headers("/x"), request_trailers(), request_trailers()]),
        ("/x", [request_headers("/x"), response_trailers()]),
        ("/x", [request_headers("/x"), response_headers(200), response_headers(200)]),
        ("/x", [request_headers("/x"), response_headers(200), response_trailers(), response_headers(200)]),
        (CHECKED, [request_headers(CHECKED, end_of_stream=False), request_trailers()]),
        (CHECKED, [request_headers(CHECKED, end_of_stream=False), response_headers(200)]),
        (
            CHECKED,
            [
                request_headers(CHECKED, end_of_stream=False),
                request_body(GOOD, end_of_stream=False),
                request_trailers(),
                request_body(GOOD, end_of_stream=True),
            ],
        ),
    ],
    ids=[
        "trailers-first",
        "empty-message",
        "request-trailers-twice",
        "response-trailers-before-headers",
        "response-headers-twice",
        "after-response-trailers",
        "trailers-before-buffered-body",
        "response-before-buffered-body",
        "body-after-trailers",
    ],
)
async def test_sequences_out_of_order_end_the_stream_cleanly(
    make_gateway: Any, tmp_path: Path, path: str, messages: list[Any]
) -> None:
    async with make_gateway(mesh_config(tmp_path, request_body={"checked": "buffered"})) as gateway:
        port = gateway.mesh.port
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await exchange(port, messages)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await nothing_in_flight(gateway)
        # The server keeps serving.
        (answer,) = await exchange(port, [request_headers("/x", [("x-user-id", "u1")])])
        assert answer.WhichOneof("response") == "request_headers"
