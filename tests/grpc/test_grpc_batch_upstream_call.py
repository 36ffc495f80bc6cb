"""What a batch's upstream call carries (gRPC metadata, REST headers alike): its own request id, the
members' ids and the batch span's traceparent, none of a member's own metadata; and the worker's
load report in its answer reaches the balancer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import numpy as np
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from plugins.batching.member import Member
from plugins.batching.payload import Payload
from plugins.batching.sender import BATCH_MEMBERS, MAX_MEMBER_IDS_BYTES, batch_headers
from tests.conftest import gateway_config
from tests.grpc.batch_upstream import BATCHING, CALLS, EchoModel, serving
from tests.support.processes import free_port

# The worker's load report on every answer: what the balancer should come to know.
QUEUE_DEPTH = 7
INFLIGHT = 3
# Each member's own metadata: none of it is the merged call's.
PRIVATE = ("x-user-id", "authorization", "traceparent")


@pytest.fixture
async def upstream() -> AsyncIterator[EchoModel]:
    load_report = (("x-turnout-queue-depth", str(QUEUE_DEPTH)), ("x-turnout-inflight", str(INFLIGHT)))
    async with serving(EchoModel(initial=load_report)) as model:
        yield model


def _config(upstream: EchoModel, *, load_balancer: str | None = None) -> dict[str, Any]:
    config = gateway_config(
        [],
        routes=[{"name": "m", "match": {"model": "m"}, "backend": {"cluster": "up"}, "filters": [BATCHING]}],
        # Unsampled: the batch's attempt still sends a traceparent continuing a member's trace.
        tracing={"enabled": True, "sampling_ratio": 0.0, "endpoint": f"http://127.0.0.1:{free_port()}"},
    )
    config["clusters"] = {"up": {"protocol": "oip_v2", "endpoints": [upstream.endpoint]}}
    if load_balancer is not None:
        config["clusters"]["up"]["balancer"] = load_balancer
    return config


def _traceparent(index: int) -> str:
    return f"00-{index + 1:032x}-{index + 1:016x}-00"


def _member_metadata(index: int) -> dict[str, str]:
    return {
        "x-request-id": f"call-{index}",
        "x-user-id": f"user-{index}",
        "authorization": f"Bearer secret-{index}",
        "traceparent": _traceparent(index),
    }


def _grpc_request(index: int) -> Any:
    message = pb.ModelInferRequest(model_name="m", id=f"call-{index}")
    message.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    message.raw_input_contents.append((np.arange(2, dtype=np.float32) + index).tobytes())
    return message


async def _grpc_calls(port: int, count: int) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        await asyncio.gather(
            *(
                stub.ModelInfer(_grpc_request(index), metadata=tuple(_member_metadata(index).items()))
                for index in range(count)
            )
        )


async def _rest_calls(port: int, count: int) -> None:
    async def one(session: aiohttp.ClientSession, index: int) -> None:
        body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [index, index + 1]}]}
        url = f"http://127.0.0.1:{port}/v2/models/m/infer"
        async with session.post(url, json=body, headers=_member_metadata(index)) as response:
            assert response.status == 200, await response.text()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, index) for index in range(count)))


def _check_merged_call(upstream: EchoModel) -> None:
    """Every merged call names itself and its members, continues a member's trace, and carries
    nothing of one member's own."""
    assert len(upstream.received) < CALLS, "calls were merged"
    named: list[str] = []
    traces = {_traceparent(index).split("-")[1] for index in range(CALLS)}
    own_ids = {f"call-{index}" for index in range(CALLS)}
    for sent, rows in zip(upstream.received, upstream.rows, strict=True):
        traceparent = sent["traceparent"]
        version, trace_id, span_id, _ = traceparent.split("-")
        assert version == "00" and trace_id in traces and len(span_id) == 16
        assert traceparent not in {_traceparent(index) for index in range(CALLS)}, "the batch's own span"
        assert "x-user-id" not in sent and "authorization" not in sent
        if rows == 1:  # alone in its batch: the member's own id
            assert sent["x-request-id"] in own_ids and "x-turnout-batch-members" not in sent
            named.append(sent["x-request-id"])
            continue
        assert sent["x-request-id"] not in own_ids and len(sent["x-request-id"]) == 32
        members = sent["x-turnout-batch-members"].split(",")
        assert len(members) == rows
        named.extend(members)
    assert sorted(named) == sorted(own_ids)


async def test_a_batched_grpc_call_sends_the_batchs_id_members_and_traceparent(
    make_gateway: Any, upstream: EchoModel
) -> None:
    async with make_gateway(_config(upstream)) as gw:
        await _grpc_calls(gw.data_port, CALLS)
    _check_merged_call(upstream)


async def test_a_batched_rest_request_sends_the_same(make_gateway: Any, upstream: EchoModel) -> None:
    async with make_gateway(_config(upstream)) as gw:
        await _rest_calls(gw.data_port, CALLS)
    _check_merged_call(upstream)


async def test_a_batched_grpc_calls_load_report_reaches_the_balancer(
    make_gateway: Any, upstream: EchoModel
) -> None:
    config = _config(upstream, load_balancer="least_queue")
    async with make_gateway(config) as gw:
        address = f"127.0.0.1:{upstream.http_port}"
        endpoint = gw.runtime.clusters["up"].endpoints.get(address)
        assert endpoint.queue_depth is None and endpoint.reported_inflight is None
        await _grpc_calls(gw.data_port, CALLS)
        assert len(upstream.received) < CALLS, "calls were merged"
        url = f"http://127.0.0.1:{config['admin']['port']}/admin/clusters"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            clusters = await response.json()
        (shown,) = clusters["up"]["endpoints"]
        assert shown["queue_depth"] == QUEUE_DEPTH
        assert endpoint.reported_inflight == INFLIGHT


def test_a_large_batch_names_the_members_that_fit() -> None:
    loop = asyncio.new_event_loop()
    try:
        payload = Payload(None, 1, (), None)  # type: ignore[arg-type]  # only the id is read
        ids = [f"{index:032x}" for index in range(300)]
        members = [Member(payload, 0, 0.0, loop.create_future(), None, id_) for id_ in ids]
        headers = batch_headers(members, {"content-type": "application/json"})
        named = headers[BATCH_MEMBERS]
        assert len(named) <= MAX_MEMBER_IDS_BYTES and named.split(",") == ids[: len(named.split(","))]
        assert len(named.split(",")) == MAX_MEMBER_IDS_BYTES // 33
        assert headers["content-type"] == "application/json" and headers["x-request-id"] not in ids
        alone = batch_headers(members[:1], {})
        assert alone == {"x-request-id": ids[0]}
    finally:
        loop.close()
