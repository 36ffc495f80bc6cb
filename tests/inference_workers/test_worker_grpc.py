"""The worker's gRPC service against a real worker process, through the generated stub."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from gateway.core.protocols.oip_v2 import InferRequest, RequestedOutput, Tensor
from inference_workers.grpc_codec import pb, pb_grpc, request_to_proto, response_from_proto
from inference_workers.rest import QUEUE_DEPTH_HEADER
from tests.inference_workers.support import WorkerProcess
from tests.inference_workers.test_worker_rest import _echo_tensors


@pytest.fixture
async def stub(worker: WorkerProcess) -> AsyncIterator[Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as channel:
        yield pb_grpc.GRPCInferenceServiceStub(channel)


async def test_health_and_metadata(stub: Any) -> None:
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="risk", version="1"))).ready
    server = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert server.name == "turnout-worker"
    assert "binary_tensor_data" in server.extensions
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="risk"))
    assert metadata.name == "risk"
    assert list(metadata.versions) == ["1", "2"]
    assert metadata.platform == "onnxruntime_onnx"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("features", "FP32", [-1, 30])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [
        ("probabilities", "FP32", [-1, 2]),
        ("label", "INT64", [-1]),
    ]


@pytest.mark.parametrize("raw", [True, False])
async def test_infer_answers_like_onnxruntime_in_process(
    stub: Any, model_repository: Path, breast_cancer_rows: np.ndarray, raw: bool
) -> None:
    rows = breast_cancer_rows[40:52]
    session = ort.InferenceSession(
        str(model_repository / "risk" / "2" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    expected_label, expected_probabilities = session.run(["label", "probabilities"], {"features": rows})
    request = InferRequest([Tensor("features", "FP32", rows)], id="g-1", parameters={"trace": "t", "n": 3})
    call = stub.ModelInfer(request_to_proto("risk", None, request, raw=raw))
    message = await call
    assert bool(message.raw_output_contents) is raw
    response = response_from_proto(message)
    assert (response.model_name, response.model_version, response.id) == ("risk", "2", "g-1")
    assert response.parameters == {"trace": "t", "n": 3}
    outputs = {tensor.name: tensor.data for tensor in response.outputs}
    np.testing.assert_array_equal(outputs["probabilities"], expected_probabilities)
    np.testing.assert_array_equal(outputs["label"], expected_label)
    trailing = dict(await call.trailing_metadata())
    assert trailing["x-turnout-queue-depth"] == "0"


async def test_every_datatype_round_trips_in_raw_contents(stub: Any) -> None:
    tensors = _echo_tensors()
    message = request_to_proto("echo", "1", InferRequest(tensors), raw=True)
    response = response_from_proto(await stub.ModelInfer(message))
    outputs = {tensor.name: tensor for tensor in response.outputs}
    for tensor in tensors:
        echoed = outputs["out_" + tensor.name.removeprefix("in_")]
        assert echoed.datatype == tensor.datatype
        np.testing.assert_array_equal(echoed.data, tensor.data)


async def test_typed_contents_for_every_typed_datatype(stub: Any) -> None:
    tensors = [tensor for tensor in _echo_tensors() if tensor.datatype != "FP16"]
    message = request_to_proto("echo", "1", InferRequest(tensors), raw=False)
    fp16 = message.inputs.add(name="in_fp16", datatype="FP16", shape=[1, 1])
    fp16.contents.fp32_contents.append(1.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(message)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "FP16 has no typed contents field" in (caught.value.details() or "")
    # An empty FP16 tensor needs no contents at all, so typed requests can still feed the model.
    del message.inputs[-1]
    message.inputs.add(name="in_fp16", datatype="FP16", shape=[1, 0])
    response = response_from_proto(await stub.ModelInfer(message))
    by_name = {tensor.name: tensor for tensor in response.outputs}
    for tensor in tensors:
        np.testing.assert_array_equal(by_name["out_" + tensor.name.removeprefix("in_")].data, tensor.data)


@pytest.mark.parametrize(
    ("build", "code", "details"),
    [
        (lambda m: setattr(m, "model_name", "nope"), grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        (lambda m: setattr(m, "model_version", "7"), grpc.StatusCode.NOT_FOUND, "unknown version '7'"),
        (
            lambda m: m.inputs[0].shape.__setitem__(0, 2),
            grpc.StatusCode.INVALID_ARGUMENT,
            "needs 240 bytes, got 120",
        ),
        (
            lambda m: setattr(m.inputs[0], "datatype", "FP64"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "needs 240 bytes",
        ),
        (
            lambda m: setattr(m.inputs[0], "name", "x"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "input 'x' is not an input",
        ),
        (
            lambda m: m.raw_input_contents.append(b""),
            grpc.StatusCode.INVALID_ARGUMENT,
            "2 entries for 1 inputs",
        ),
        (
            lambda m: m.outputs.add(name="nope"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "output 'nope' is not an output",
        ),
    ],
)
async def test_errors_become_grpc_statuses(
    stub: Any, breast_cancer_rows: np.ndarray, build: Any, code: grpc.StatusCode, details: str
) -> None:
    message = request_to_proto(
        "risk", "1", InferRequest([Tensor("features", "FP32", breast_cancer_rows[:1])])
    )
    build(message)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(message)
    assert caught.value.code() == code
    assert details in (caught.value.details() or "")


async def test_typed_contents_in_the_wrong_field_are_named(stub: Any) -> None:
    message = pb.ModelInferRequest(model_name="risk")
    tensor = message.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    tensor.contents.fp64_contents.extend([0.5] * 30)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ModelInfer(message)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (
        caught.value.details()
        == "input 'features': datatype FP32 travels in fp32_contents, got fp64_contents"
    )


async def test_requested_outputs_only(stub: Any, breast_cancer_rows: np.ndarray) -> None:
    request = InferRequest(
        [Tensor("features", "FP32", breast_cancer_rows[:3])], outputs=[RequestedOutput("label")]
    )
    response = response_from_proto(await stub.ModelInfer(request_to_proto("risk", "1", request)))
    assert [tensor.name for tensor in response.outputs] == ["label"]
    assert response.outputs[0].shape == (3,)


async def test_stream_answers_each_request_in_order_and_outlives_a_bad_one(
    stub: Any, breast_cancer_rows: np.ndarray
) -> None:
    def infer(model: str, version: str | None, rows: np.ndarray, id: str) -> Any:
        return request_to_proto(model, version, InferRequest([Tensor("features", "FP32", rows)], id=id))

    requests = [
        infer("risk", "1", breast_cancer_rows[:3], "a"),
        infer("nope", None, breast_cancer_rows[:3], "b"),
        infer("risk", "2", breast_cancer_rows[3:8], "c"),
    ]

    async def send() -> AsyncIterator[Any]:
        for request in requests:
            yield request

    call = stub.ModelStreamInfer(send())
    answers = [answer async for answer in call]
    assert len(answers) == 3 and answers[0].error_message == ""
    assert "nope" in answers[1].error_message and not answers[1].HasField("infer_response")
    assert answers[2].error_message == ""
    first, last = (response_from_proto(answers[i].infer_response) for i in (0, 2))
    assert (first.id, first.model_version, last.id, last.model_version) == ("a", "1", "c", "2")
    # each answer equals the unary call's for the same request
    assert answers[0].infer_response == await stub.ModelInfer(requests[0])
    assert answers[2].infer_response == await stub.ModelInfer(requests[2])
    assert await call.code() == grpc.StatusCode.OK
    assert QUEUE_DEPTH_HEADER in {key for key, _ in await call.trailing_metadata()}
