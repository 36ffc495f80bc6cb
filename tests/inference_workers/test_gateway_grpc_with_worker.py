"""turnout's gRPC front door in front of a real worker process: the same answers as calling the
worker's gRPC port directly, with the model named in the request message choosing the route."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from gateway.core.protocols.oip_v2 import InferRequest, Tensor
from inference_workers.grpc_codec import pb, pb_grpc, request_to_proto
from tests.conftest import gateway_config
from tests.inference_workers.support import WorkerProcess
from tests.support.processes import free_port


def _config(worker: WorkerProcess) -> dict[str, Any]:
    address = f"127.0.0.1:{worker.grpc_port}"
    config = gateway_config(
        [address],
        listen={"grpc_port": free_port()},
        routes=[
            {"name": "risk", "match": {"model": "risk"}, "backend": {"cluster": "workers"}},
            {
                "name": "oip",
                "match": {"grpc_service": "inference.GRPCInferenceService"},
                "backend": {"cluster": "workers"},
            },
        ],
    )
    config["clusters"] = {"workers": {"endpoints": [address]}}
    return config


@pytest.mark.parametrize("version", ["1", "2", None])
async def test_raw_tensor_answers_equal_direct_ones(
    make_gateway: Any, worker: WorkerProcess, breast_cancer_rows: np.ndarray, version: str | None
) -> None:
    request = request_to_proto(
        "risk", version, InferRequest([Tensor("features", "FP32", breast_cancer_rows[:16])])
    )
    async with make_gateway(_config(worker)) as gw:
        assert gw.grpc is not None
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}") as through,
            grpc.aio.insecure_channel(f"127.0.0.1:{worker.grpc_port}") as direct,
        ):
            via_turnout = await pb_grpc.GRPCInferenceServiceStub(through).ModelInfer(request)
            expected = await pb_grpc.GRPCInferenceServiceStub(direct).ModelInfer(request)
            assert via_turnout == expected
            assert via_turnout.raw_output_contents  # tensors came back as raw bytes, untouched
            stub = pb_grpc.GRPCInferenceServiceStub(through)
            metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="risk"))
            assert list(metadata.versions) == ["1", "2"]
            assert (await stub.ServerLive(pb.ServerLiveRequest())).live
            # the worker's own error (an unknown model) reaches the client as the worker sent it
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.ModelMetadata(pb.ModelMetadataRequest(name="nope"))
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
