"""The monitor sees sampled gRPC `ModelInfer` calls through the gateway's gRPC front door: the
request message's tensors become its rows and the reply's `raw_output_contents` its outputs, and
the client's reply is the model's, message for message."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import numpy as np
import pytest

from inference_workers.grpc_codec import pb, pb_grpc
from plugins.monitor import MonitorFilter, model_report
from tests.conftest import gateway_config
from tests.support.processes import free_port

WIDTH = 3
ROWS_PER_CALL = 4
CALLS = 12
# The monitor's background task studies each sample within a loop turn (flush_interval 0s).
SETTLE_TIMEOUT_S = 30.0


class _FirstColumn(pb_grpc.GRPCInferenceServiceServicer):  # type: ignore[misc]
    """Answers each row with its first feature, as raw FP64 contents (a regressor the test reads)."""

    async def ModelInfer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        rows = np.frombuffer(request.raw_input_contents[0], dtype=np.float32).reshape(-1, WIDTH)
        reply = pb.ModelInferResponse(model_name=request.model_name, model_version="1", id=request.id)
        reply.outputs.add(name="first", datatype="FP64", shape=[len(rows)])
        reply.raw_output_contents.append(rows[:, 0].astype(np.float64).tobytes())
        return reply


def _call(rows: np.ndarray) -> Any:
    data = np.ascontiguousarray(rows, dtype=np.float32)
    message = pb.ModelInferRequest(model_name="risk", model_version="1")
    message.inputs.add(name="features", datatype="FP32", shape=list(data.shape))
    message.raw_input_contents.append(data.tobytes())
    return message


async def test_sampled_model_infer_calls_are_sketched(make_gateway: Any) -> None:
    server = grpc.aio.server()
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(_FirstColumn(), server)
    upstream_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    monitor = {"sample_rate": 1.0, "flush_interval": "0s", "models": {"risk": {}}}
    config = gateway_config(
        [f"127.0.0.1:{upstream_port}"],
        listen={"grpc_port": free_port()},
        routes=[
            {
                "name": "risk",
                "match": {"model": "risk"},
                "backend": {"cluster": "up"},
                "filters": [{"monitor": monitor}],
            }
        ],
    )
    rng = np.random.default_rng(4)
    firsts: list[float] = []
    try:
        async with make_gateway(config) as gw:
            assert gw.grpc is not None
            [monitor_filter] = gw.runtime.routes[0].filters.filters
            assert isinstance(monitor_filter, MonitorFilter)
            through = grpc.aio.insecure_channel(f"127.0.0.1:{gw.grpc.port}")
            direct = grpc.aio.insecure_channel(f"127.0.0.1:{upstream_port}")
            async with through, direct:
                for _ in range(CALLS):
                    rows = rng.normal(loc=5.0, size=(ROWS_PER_CALL, WIDTH)).astype(np.float32)
                    reply = await pb_grpc.GRPCInferenceServiceStub(through).ModelInfer(_call(rows))
                    expected = await pb_grpc.GRPCInferenceServiceStub(direct).ModelInfer(_call(rows))
                    assert reply.SerializeToString() == expected.SerializeToString()
                    firsts.extend(rows[:, 0].astype(np.float64).tolist())
            rows_seen = CALLS * ROWS_PER_CALL
            for _ in range(int(SETTLE_TIMEOUT_S / 0.05)):
                report = model_report([monitor_filter], "risk")
                if report is not None and report["rows"] >= rows_seen:
                    break
                await asyncio.sleep(0.05)
            assert report is not None and report["rows"] == rows_seen, report
            assert [feature["index"] for feature in report["features"]] == list(range(WIDTH))
            first = report["outputs"]["first"]
            assert first["kind"] == "values" and first["rows"] == rows_seen
            assert first["mean"] == pytest.approx(float(np.mean(firsts)))
            assert first["min"] == pytest.approx(min(firsts)) and first["max"] == pytest.approx(max(firsts))
            assert report["errors"] == []
    finally:
        await server.stop(None)
