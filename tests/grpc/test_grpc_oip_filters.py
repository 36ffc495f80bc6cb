"""Validation, caching and batching of OIP v2 gRPC ModelInfer calls, through turnout to a real
turnout worker (its gRPC port), counted by the worker's own inference counter."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

import gateway.grpc.oip_infer
from inference_workers.grpc_codec import pb, pb_grpc, response_from_proto
from tests.conftest import gateway_config
from tests.inference_workers.support import WorkerProcess, start_worker
from tests.support.processes import free_port

_INFERENCES = re.compile(
    r'^turnout_worker_inferences_total\{[^}]*model="risk"[^}]*outcome="success"[^}]*\} (\S+)$', re.M
)


@pytest.fixture(scope="module")
def worker(demo_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    process = start_worker(demo_models, tmp_path_factory.mktemp("worker"), "--models", "risk")
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    features: np.ndarray = load_breast_cancer(return_X_y=True)[0].astype(np.float32)
    return features


def _inferences(worker: WorkerProcess) -> float:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(value) for value in _INFERENCES.findall(text))


def _config(worker: WorkerProcess, filters: list[dict[str, Any]]) -> dict[str, Any]:
    return gateway_config(
        [f"127.0.0.1:{worker.grpc_port}"],
        listen={"grpc_port": free_port()},
        routes=[
            {"name": "risk", "match": {"model": "risk"}, "backend": {"cluster": "up"}, "filters": filters}
        ],
    )


def _request(
    features: np.ndarray, *, request_id: str = "", name: str = "features", raw: bytes | None = None
) -> Any:
    data = np.ascontiguousarray(features, dtype=np.float32)
    message = pb.ModelInferRequest(model_name="risk", model_version="1", id=request_id)
    message.inputs.add(name=name, datatype="FP32", shape=list(data.shape))
    message.raw_input_contents.append(data.tobytes() if raw is None else raw)
    return message


async def test_invalid_tensors_are_refused_naming_them(
    make_gateway: Any, worker: WorkerProcess, rows: np.ndarray
) -> None:
    async with make_gateway(_config(worker, [{"validate": {"oip_v2": True}}])) as gw:
        assert gw.grpc is not None
        before = _inferences(worker)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            refused = {
                "an unknown input": (_request(rows[:2], name="colour"), "input 'colour' is not an input"),
                "a wrong dimension": (_request(rows[:2, :29]), "input 'features': dimension 1"),
                "bytes short of the shape": (
                    _request(rows[:2], raw=rows[:2].tobytes()[:-4]),
                    "input 'features': shape [2, 30] of FP32 needs 240 bytes, got 236",
                ),
            }
            for what, (message, words) in refused.items():
                with pytest.raises(grpc.aio.AioRpcError) as failed:
                    await stub.ModelInfer(message)
                assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
                assert words in (failed.value.details() or ""), (what, failed.value.details())
            unknown = _request(rows[:2])
            unknown.model_version = "9"
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.ModelInfer(unknown)
            assert failed.value.code() == grpc.StatusCode.NOT_FOUND
            assert "model 'risk' version '9' is not served here" in (failed.value.details() or "")
            # the model's metadata came over gRPC; a valid call passes and only it reached the model
            answer = response_from_proto(await stub.ModelInfer(_request(rows[:2])))
            assert [output.name for output in answer.outputs] == ["probabilities", "label"]
    assert _inferences(worker) == before + 1


def _no_decoding() -> Any:
    raise AssertionError("a ModelInfer message was decoded on a route that neither validates nor batches")


async def test_a_cached_call_does_not_reach_the_upstream_again(
    make_gateway: Any, worker: WorkerProcess, rows: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    # caching keys the message's bytes: neither it nor the relay decodes a tensor
    monkeypatch.setattr(gateway.grpc.oip_infer, "pb", _no_decoding)
    monkeypatch.setattr(gateway.grpc.oip_infer, "codec", _no_decoding)
    async with make_gateway(_config(worker, [{"cache": {}}])) as gw:
        assert gw.grpc is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            before = _inferences(worker)
            first = stub.ModelInfer(_request(rows[:3], request_id="a"))
            answer = await first
            assert ("x-turnout-cache", "miss") in tuple(await first.initial_metadata())
            second = stub.ModelInfer(_request(rows[:3], request_id="a"))
            assert await second == answer
            assert ("x-turnout-cache", "hit") in tuple(await second.initial_metadata())
            assert await second.code() == grpc.StatusCode.OK
            assert _inferences(worker) == before + 1
            # other tensors are another key; a caller with credentials is not served another's answer
            other = await stub.ModelInfer(_request(rows[3:6], request_id="a"))
            assert other != answer
            private = stub.ModelInfer(
                _request(rows[:3], request_id="a"), metadata=(("authorization", "Bearer x"),)
            )
            assert await private == answer
            assert ("x-turnout-cache", "hit") not in tuple(await private.initial_metadata())
            assert _inferences(worker) == before + 3


async def test_32_concurrent_calls_are_batched_with_answers_equal_to_unbatched_ones(
    make_gateway: Any, worker: WorkerProcess, rows: np.ndarray
) -> None:
    # 100 ms: the 32 calls reach the gateway within it even on a busy machine
    batching = {"batching": {"max_batch_size": 32, "max_queue_delay": "100ms"}}
    async with make_gateway(_config(worker, [batching])) as gw:
        assert gw.grpc is not None
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as direct_channel,
        ):
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            direct = pb_grpc.GRPCInferenceServiceStub(direct_channel)
            messages = [_request(rows[i : i + 1 + i % 2], request_id=f"call-{i}") for i in range(32)]
            # typed contents cannot be merged: such a call goes upstream alone, as without batching
            typed = pb.ModelInferRequest(model_name="risk", model_version="1", id="typed")
            typed.inputs.add(name="features", datatype="FP32", shape=[1, 30])
            typed.inputs[0].contents.fp32_contents.extend(rows[40].tolist())
            messages.append(typed)
            alone = [await direct.ModelInfer(message) for message in messages]
            # the upstream's own status reaches every member of a batch
            missing = [_request(rows[i : i + 1], request_id=f"v9-{i}") for i in range(4)]
            for message in missing:
                message.model_version = "9"
            failures = await asyncio.gather(*(stub.ModelInfer(m) for m in missing), return_exceptions=True)
            assert all(
                isinstance(f, grpc.aio.AioRpcError) and f.code() == grpc.StatusCode.NOT_FOUND
                for f in failures
            ), failures
            before = _inferences(worker)
            batched = await asyncio.gather(*(stub.ModelInfer(message) for message in messages))
            upstream_calls = _inferences(worker) - before
    assert upstream_calls < 16
    for got, expected, message in zip(batched, alone, messages, strict=True):
        assert got.id == message.id
        mine, theirs = response_from_proto(got), response_from_proto(expected)
        assert [o.name for o in mine.outputs] == [o.name for o in theirs.outputs]
        for a, b in zip(mine.outputs, theirs.outputs, strict=True):
            assert a.data.shape == b.data.shape
            np.testing.assert_allclose(a.data, b.data, rtol=1e-5, atol=1e-6)


async def test_validation_caching_and_batching_compose(
    make_gateway: Any, worker: WorkerProcess, rows: np.ndarray
) -> None:
    filters: list[dict[str, Any]] = [
        {"validate": {"oip_v2": True}},
        {"cache": {}},
        {"batching": {"max_batch_size": 16, "max_queue_delay": "100ms"}},
    ]
    async with make_gateway(_config(worker, filters)) as gw:
        assert gw.grpc is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            messages = [_request(rows[50 + i : 51 + i], request_id=f"c-{i}") for i in range(8)]
            before = _inferences(worker)
            first = await asyncio.gather(*(stub.ModelInfer(message) for message in messages))
            batched = _inferences(worker) - before
            again = [stub.ModelInfer(message) for message in messages]
            assert await asyncio.gather(*again) == first
            for call in again:
                assert ("x-turnout-cache", "hit") in tuple(await call.initial_metadata())
            with pytest.raises(grpc.aio.AioRpcError) as failed:
                await stub.ModelInfer(_request(rows[:1, :10]))
            assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [answer.id for answer in first] == [message.id for message in messages]
    assert 1 <= batched < 8
    assert _inferences(worker) - before == batched


async def test_a_grpc_call_to_a_rest_route_leaves_its_rest_validation_whole(
    make_gateway: Any, worker: WorkerProcess, rows: np.ndarray
) -> None:
    config = _config(worker, [{"validate": {"oip_v2": True}}])
    config["clusters"]["up"]["endpoints"] = [worker.url.removeprefix("http://")]
    async with make_gateway(config) as gw:
        assert gw.grpc is not None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as failed:  # validated, then no gRPC upstream
                await stub.ModelInfer(_request(rows[:1]))
            assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
        body = {
            "inputs": [{"name": "colour", "datatype": "FP32", "shape": [1, 30], "data": rows[0].tolist()}]
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{config['listen']['port']}/v2/models/risk/infer",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            await asyncio.to_thread(urllib.request.urlopen, request, timeout=10)
        # the gateway's own words, from the model's metadata (the worker words it otherwise)
        assert (
            "input 'colour' is not an input of model 'risk'; its inputs are" in refused.value.read().decode()
        )
