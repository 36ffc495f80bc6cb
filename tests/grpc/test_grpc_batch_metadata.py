"""A batched call's answer carries what the same call proxied alone carries: the upstream's initial
and trailing metadata (gRPC) or headers (REST), and the experiment's arm, less what describes only
the batch's body as a whole (its entity tag, its framing)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import numpy as np
import orjson
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from tests.conftest import gateway_config
from tests.grpc.batch_upstream import BATCHING, CALLS, EchoModel, serving

# What the upstream says about every answer, in its initial metadata (a name repeated, a binary
# value) and its trailing metadata, and in its REST headers.
INITIAL = (
    ("x-model-server", "meta/1.0"),
    ("x-multi", "one"),
    ("x-multi", "two"),
    ("x-trace-bin", b"\x00\xff"),
)
TRAILING = (("x-upstream-trailer", "done"),)
HEADERS = {"x-model-server": "meta/1.0", "cache-control": "max-age=5", "etag": '"whole-body"'}


@pytest.fixture
async def upstream() -> AsyncIterator[EchoModel]:
    async with serving(EchoModel(initial=INITIAL, trailing=TRAILING, headers=HEADERS)) as model:
        yield model


def _config(upstream: EchoModel, tmp_path: Path, filters: list[dict[str, Any]]) -> dict[str, Any]:
    """An A/B experiment over two clusters of the same upstream, its route batching or not."""
    config = gateway_config(
        [],
        routes=[{"name": "m", "match": {"model": "m"}, "backend": {"experiment": "exp"}, "filters": filters}],
        state={"sqlite_path": str(tmp_path / f"events-{len(filters)}.db")},
        experiments={
            "exp": {
                "kind": "ab",
                "unit": ["header:x-user-id"],
                "arms": {
                    "control": {"cluster": "a", "weight": 50},
                    "treatment": {"cluster": "b", "weight": 50},
                },
            }
        },
    )
    config["clusters"] = {
        name: {"protocol": "oip_v2", "endpoints": [upstream.endpoint]} for name in ("a", "b")
    }
    return config


def _without_exposure(metadata: Counter[tuple[str, Any]]) -> Counter[tuple[str, Any]]:
    exposures = [pair for pair in metadata if pair[0] == "x-turnout-exposure-id"]
    assert len(exposures) == 1, metadata
    return metadata - Counter(exposures)


def _grpc_request(index: int) -> Any:
    message = pb.ModelInferRequest(model_name="m", id=f"call-{index}")
    message.inputs.add(name="x", datatype="FP32", shape=[1 + index % 2, 2])
    values = np.arange(2 * (1 + index % 2), dtype=np.float32) + index
    message.raw_input_contents.append(values.tobytes())
    return message


async def _grpc_calls(port: int) -> list[tuple[Any, Counter[tuple[str, Any]], Counter[tuple[str, Any]]]]:
    """The answers to CALLS concurrent calls, with their initial and trailing metadata."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        calls = [
            stub.ModelInfer(_grpc_request(index), metadata=(("x-user-id", f"user-{index}"),))
            for index in range(CALLS)
        ]
        answers = await asyncio.gather(*calls)
        return [
            (answer, Counter(await call.initial_metadata()), Counter(await call.trailing_metadata()))
            for answer, call in zip(answers, calls, strict=True)
        ]


async def test_batched_grpc_calls_carry_the_upstreams_metadata_and_the_arm(
    make_gateway: Any, upstream: EchoModel, tmp_path: Path
) -> None:
    async with make_gateway(_config(upstream, tmp_path, [])) as gw:
        alone = await _grpc_calls(gw.data_port)
    assert sorted(upstream.rows) == sorted(1 + index % 2 for index in range(CALLS))
    upstream.rows.clear()
    async with make_gateway(_config(upstream, tmp_path, [BATCHING])) as gw:
        batched = await _grpc_calls(gw.data_port)
    assert len(upstream.rows) < CALLS, "calls were merged"
    arms: set[str | bytes] = set()
    for (got, initial, trailing), (expected, alone_initial, alone_trailing) in zip(
        batched, alone, strict=True
    ):
        assert got == expected
        # every call has an exposure id of its own; the rest is the same
        assert _without_exposure(initial) == _without_exposure(alone_initial)
        assert trailing == alone_trailing
        assert all(initial[pair] == 1 for pair in INITIAL) and all(trailing[pair] == 1 for pair in TRAILING)
        assert initial[("x-turnout-experiment", "exp")] == 1
        arms.update(value for key, value in initial if key == "x-turnout-arm")
    assert arms == {"control", "treatment"}


async def test_batched_grpc_failures_carry_the_upstreams_trailing_metadata(
    make_gateway: Any, tmp_path: Path
) -> None:
    async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "no such input", (("x-reason", "input"),))
        raise AssertionError("abort raises")

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(refuse)}
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    config = gateway_config(
        [f"127.0.0.1:{port}"],
        routes=[{"name": "m", "match": {"model": "m"}, "backend": {"cluster": "up"}, "filters": [BATCHING]}],
    )
    try:
        async with (
            make_gateway(config) as gw,
            grpc.aio.insecure_channel(f"127.0.0.1:{gw.data_port}") as channel,
        ):
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            failures = await asyncio.gather(
                *(stub.ModelInfer(_grpc_request(index)) for index in range(4)), return_exceptions=True
            )
    finally:
        await server.stop(None)
    for failure in failures:
        assert isinstance(failure, grpc.aio.AioRpcError), failure
        assert failure.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert ("x-reason", "input") in tuple(failure.trailing_metadata())


async def _rest_calls(port: int) -> list[tuple[dict[str, Any], dict[str, str]]]:
    async def one(session: aiohttp.ClientSession, index: int) -> tuple[dict[str, Any], dict[str, str]]:
        rows = 1 + index % 2
        data = (np.arange(2 * rows, dtype=np.float32) + index).tolist()
        body = {
            "id": f"call-{index}",
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [rows, 2], "data": data}],
        }
        url = f"http://127.0.0.1:{port}/v2/models/m/infer"
        async with session.post(url, json=body, headers={"x-user-id": f"user-{index}"}) as response:
            assert response.status == 200, await response.text()
            return orjson.loads(await response.read()), {k.lower(): v for k, v in response.headers.items()}

    async with aiohttp.ClientSession() as session:
        return await asyncio.gather(*(one(session, index) for index in range(CALLS)))


async def test_batched_rest_requests_carry_the_upstreams_headers_and_the_arm(
    make_gateway: Any, upstream: EchoModel, tmp_path: Path
) -> None:
    async with make_gateway(_config(upstream, tmp_path, [])) as gw:
        alone = await _rest_calls(gw.data_port)
    upstream.rows.clear()
    async with make_gateway(_config(upstream, tmp_path, [BATCHING])) as gw:
        batched = await _rest_calls(gw.data_port)
    assert len(upstream.rows) < CALLS, "requests were merged"
    compared = ("x-model-server", "cache-control", "content-type", "x-turnout-arm", "x-turnout-experiment")
    for (got, headers), (expected, alone_headers) in zip(batched, alone, strict=True):
        assert got["outputs"] == expected["outputs"] and got["id"] == expected["id"]
        assert {name: headers.get(name) for name in compared} == {
            name: alone_headers.get(name) for name in compared
        }
        assert headers["x-model-server"] == "meta/1.0" and headers["x-turnout-experiment"] == "exp"
        # the entity tag names the upstream's whole body: a share cut from it is another body
        assert alone_headers["etag"] == '"whole-body"' and "etag" not in headers
