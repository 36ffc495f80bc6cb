"""A loaded model's executor and load counters, and backends refusing bad models with clear reasons."""

from __future__ import annotations

import asyncio
import re
import shutil
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.core.errors import ServiceUnavailable
from inference_workers.backends import ModelLoadError, ModelSource, load_backend
from inference_workers.config import ModelConfig, read_model_config
from inference_workers.device import CPU, Device
from inference_workers.metrics import WorkerMetrics
from inference_workers.served_model import ServedModel, WorkerLoad
from inference_workers.signature import Signature

CONFIG = ModelConfig.model_validate(
    {
        "backend": "onnxruntime",
        "instance_count": 1,
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
    }
)


class GatedBackend:
    """Runs only when the test opens the gate, so the test sees requests queue and run."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.closed = False

    def run(self, inputs: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        if not self.gate.wait(10):
            raise TimeoutError("gate never opened")
        return {"y": inputs["x"] * 2}

    def close(self) -> None:
        self.closed = True


async def until(condition: Any) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        if condition():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition never held")
        await asyncio.sleep(0.005)


async def test_requests_queue_for_the_instance_and_are_counted() -> None:
    backend, load = GatedBackend(), WorkerLoad()
    metrics = WorkerMetrics()
    model = ServedModel("m", 1, backend, Signature("m", CONFIG), 1, metrics.for_model("m", "1"), load)
    calls = [asyncio.create_task(model.infer({"x": np.array([float(i)])}, ["y"], 1)) for i in range(3)]
    await until(lambda: (model.running, model.waiting) == (1, 2))
    assert (load.running, load.waiting) == (1, 2)
    sample = model.sample()
    assert (sample.model, sample.version, sample.waiting, sample.running) == ("m", "1", 2, 1)

    calls[2].cancel()  # a queued request that goes away leaves the queue
    await until(lambda: model.waiting == 1)
    backend.gate.set()
    results = await asyncio.gather(calls[0], calls[1])
    assert [result["y"].tolist() for result in results] == [[0.0], [2.0]]
    assert (model.running, model.waiting, load.running, load.waiting) == (0, 0, 0, 0)
    text = metrics.render().decode()
    assert 'turnout_worker_inferences_total{model="m",outcome="success",version="1"} 2.0' in text

    await model.close()
    assert backend.closed
    with pytest.raises(ServiceUnavailable, match="being unloaded"):
        await model.infer({"x": np.array([1.0])}, ["y"], 1)


async def test_a_cancelled_running_request_holds_its_slot_until_the_backend_returns() -> None:
    backend, load = GatedBackend(), WorkerLoad()
    model = ServedModel("m", 1, backend, Signature("m", CONFIG), 1, WorkerMetrics().for_model("m", "1"), load)
    running = asyncio.create_task(model.infer({"x": np.array([1.0])}, ["y"], 1))
    await until(lambda: model.running == 1)
    running.cancel()
    await asyncio.sleep(0.05)
    assert model.running == 1, "the backend is still computing, so the slot is still taken"
    backend.gate.set()
    await until(lambda: model.running == 0)
    await model.close()


def source(directory: Path, config: ModelConfig, device: Device = CPU) -> ModelSource:
    return ModelSource("m", 1, directory, config, device)


def test_onnx_backend_checks_the_graph_against_the_config(demo_repository: Path, tmp_path: Path) -> None:
    shutil.copy(demo_repository / "risk" / "1" / "model.onnx", tmp_path / "model.onnx")
    config = read_model_config(demo_repository / "risk" / "1")
    wrong_type = config.model_copy(
        update={"outputs": (config.outputs[0].model_copy(update={"datatype": "FP64"}),)}
    )
    with pytest.raises(
        ModelLoadError, match="output 'probabilities' is tensor\\(float\\) in the ONNX graph but FP64"
    ):
        load_backend(source(tmp_path, wrong_type))
    renamed = config.model_copy(update={"inputs": (config.inputs[0].model_copy(update={"name": "x"}),)})
    with pytest.raises(ModelLoadError, match="input 'x' is not in the ONNX graph, which has features"):
        load_backend(source(tmp_path, renamed))
    with pytest.raises(ModelLoadError, match=re.escape("options.threads: Extra inputs are not permitted")):
        load_backend(source(tmp_path, config.model_copy(update={"options": {"threads": 2}})))
    with pytest.raises(ModelLoadError, match=re.escape("artifact model.onnx is missing")):
        load_backend(source(tmp_path / "elsewhere", config))


def test_onnx_backend_on_cuda_needs_the_cuda_provider(demo_repository: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime build has CUDA")
    config = read_model_config(demo_repository / "risk" / "1")
    with pytest.raises(ModelLoadError, match="needs onnxruntime's CUDAExecutionProvider"):
        load_backend(source(demo_repository / "risk" / "1", config, Device("cuda", 0)))


def test_sklearn_backend_refuses_unknown_outputs_and_methods(model_repository: Path) -> None:
    directory = model_repository / "risk_sklearn" / "1"
    config = read_model_config(directory)
    with pytest.raises(ModelLoadError, match=r"options.methods names unknown outputs \['score'\]"):
        load_backend(
            source(directory, config.model_copy(update={"options": {"methods": {"score": "predict"}}}))
        )
    transform = {"options": {"methods": {"label": "transform"}}}
    with pytest.raises(ModelLoadError, match="output 'label' uses transform, which Pipeline lacks"):
        load_backend(source(directory, config.model_copy(update=transform)))


def test_torch_backend_without_pytorch_says_how_to_get_it(tmp_path: Path) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PyTorch is installed here")
    (tmp_path / "model.pt").write_bytes(b"")
    config = CONFIG.model_copy(update={"backend": "torch"})
    with pytest.raises(ModelLoadError, match=r"needs PyTorch: pip install 'turnout\[torch\]'"):
        load_backend(source(tmp_path, config))
