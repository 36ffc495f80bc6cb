"""Parsing what operators write: --models, --device, model.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from inference_workers.config import ModelConfigError, read_model_config
from inference_workers.device import CPU, Device, DeviceError, parse_device
from inference_workers.selection import ModelSelection, SelectionError


def test_models_selection() -> None:
    selection = ModelSelection.parse("risk:1, risk:2,diabetes")
    assert selection.includes("risk", 1) and selection.includes("risk", 2)
    assert not selection.includes("risk", 3)
    assert selection.includes("diabetes", 7)
    assert not selection.includes("echo", 1)
    assert ModelSelection.parse("risk,risk:1").includes("risk", 5), "a bare name keeps every version"
    assert ModelSelection.parse(None).includes("anything", 1)
    assert ModelSelection.parse(" ").includes("anything", 1)


@pytest.mark.parametrize(("text", "message"), [(":1", "has no model name"), ("risk:v1", "is not a number")])
def test_bad_models_selection(text: str, message: str) -> None:
    with pytest.raises(SelectionError, match=message):
        ModelSelection.parse(text)


@pytest.mark.parametrize(
    ("spec", "gpus", "device"),
    [
        ("cpu", 2, CPU),
        ("auto", 0, CPU),
        ("auto", 2, Device("cuda", 0)),
        ("cuda", 1, Device("cuda", 0)),
        ("cuda:1", 2, Device("cuda", 1)),
    ],
)
def test_devices(spec: str, gpus: int, device: Device) -> None:
    assert parse_device(spec, gpus) == device


@pytest.mark.parametrize(
    ("spec", "gpus", "message"),
    [
        ("cuda", 0, "--device cuda: no CUDA GPU is visible on this host"),
        ("cuda:2", 2, "--device cuda:2: only 2 GPU(s) are visible (cuda:0..cuda:1)"),
        ("gpu", 1, "--device 'gpu': use auto, cpu, cuda or cuda:N"),
        ("cuda:x", 1, "--device 'cuda:x': use auto, cpu, cuda or cuda:N"),
    ],
)
def test_unusable_devices(spec: str, gpus: int, message: str) -> None:
    with pytest.raises(DeviceError) as caught:
        parse_device(spec, gpus)
    assert str(caught.value).startswith(message)


def write(tmp_path: Path, config: object) -> Path:
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


VALID = {
    "backend": "onnxruntime",
    "max_batch_size": 8,
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 3]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}],
}


def test_a_valid_config(tmp_path: Path) -> None:
    config = read_model_config(write(tmp_path, VALID))
    assert config.artifact_name == "model.onnx"
    assert config.platform == "onnxruntime_onnx"
    assert (config.instance_count, config.lazy, config.device) == (1, False, "auto")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"backend": "tensorflow"}, "backend: Input should be 'onnxruntime', 'sklearn' or 'torch'"),
        (
            {"inputs": [{"name": "x", "datatype": "FP8", "shape": [-1]}]},
            "inputs.0.datatype: Value error, unknown datatype",
        ),
        (
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [3]}]},
            "the first dimension is the batch and must be -1",
        ),
        ({"outputs": [{"name": "y", "datatype": "FP32", "shape": [-1]}] * 2}, "output names must be unique"),
        ({"instance_count": 0}, "instance_count: Input should be greater than or equal to 1"),
        ({"batch": 4}, "batch: Extra inputs are not permitted"),
        ({"inputs": []}, "inputs: Tuple should have at least 1 item"),
    ],
)
def test_invalid_configs_name_the_file_and_field(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ModelConfigError) as caught:
        read_model_config(write(tmp_path, {**VALID, **change}))
    assert str(caught.value).startswith(str(tmp_path / "model.yaml"))
    assert message in str(caught.value)


def test_unreadable_configs(tmp_path: Path) -> None:
    with pytest.raises(ModelConfigError, match="No such file"):
        read_model_config(tmp_path)
    (tmp_path / "model.yaml").write_text("- a list\n")
    with pytest.raises(ModelConfigError, match="must be a mapping"):
        read_model_config(tmp_path)
