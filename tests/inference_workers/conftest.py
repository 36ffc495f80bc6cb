"""Session fixtures: one model repository built for real, and one worker process serving it.

The repository holds the demo models (built by the production builder) plus test models: the risk
classifier as a scikit-learn pipeline, an ONNX echo model with one input per datatype, and a
scikit-learn model whose inference sleeps as long as the request asks.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import yaml

from tests.inference_workers.slow_estimator import SleepThenSum
from tests.inference_workers.support import WorkerProcess, start_worker

DATATYPES = (
    "BOOL",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "FP16",
    "FP32",
    "FP64",
)
ALL_DATATYPES = (*DATATYPES, "BYTES")


def write_config(directory: Path, config: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _build_echo_model(directory: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    onnx_types = {
        "BOOL": TensorProto.BOOL,
        "INT8": TensorProto.INT8,
        "INT16": TensorProto.INT16,
        "INT32": TensorProto.INT32,
        "INT64": TensorProto.INT64,
        "UINT8": TensorProto.UINT8,
        "UINT16": TensorProto.UINT16,
        "UINT32": TensorProto.UINT32,
        "UINT64": TensorProto.UINT64,
        "FP16": TensorProto.FLOAT16,
        "FP32": TensorProto.FLOAT,
        "FP64": TensorProto.DOUBLE,
        "BYTES": TensorProto.STRING,
    }
    names = {datatype: datatype.lower() for datatype in ALL_DATATYPES}
    graph = helper.make_graph(
        [helper.make_node("Identity", [f"in_{names[dt]}"], [f"out_{names[dt]}"]) for dt in ALL_DATATYPES],
        "echo",
        [
            helper.make_tensor_value_info(f"in_{names[dt]}", onnx_types[dt], [None, None])
            for dt in ALL_DATATYPES
        ],
        [
            helper.make_tensor_value_info(f"out_{names[dt]}", onnx_types[dt], [None, None])
            for dt in ALL_DATATYPES
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what every onnxruntime since 1.10 reads
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(directory / "model.onnx"))
    write_config(
        directory,
        {
            "backend": "onnxruntime",
            "inputs": [
                {"name": f"in_{names[dt]}", "datatype": dt, "shape": [-1, -1]} for dt in ALL_DATATYPES
            ],
            "outputs": [
                {"name": f"out_{names[dt]}", "datatype": dt, "shape": [-1, -1]} for dt in ALL_DATATYPES
            ],
        },
    )


def _build_sklearn_models(root: Path) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = load_breast_cancer(return_X_y=True)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(
        features.astype(np.float32), labels
    )
    risk_dir = root / "risk_sklearn" / "1"
    risk_dir.mkdir(parents=True)
    joblib.dump(pipeline, risk_dir / "model.joblib")
    write_config(
        risk_dir,
        {
            "backend": "sklearn",
            "max_batch_size": 64,
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 30]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
                {"name": "label", "datatype": "INT64", "shape": [-1]},
            ],
            "options": {"methods": {"probabilities": "predict_proba"}},
        },
    )
    slow_dir = root / "slow" / "1"
    slow_dir.mkdir(parents=True)
    joblib.dump(SleepThenSum(), slow_dir / "model.joblib")
    write_config(
        slow_dir,
        {
            "backend": "sklearn",
            "max_batch_size": 8,
            "instance_count": 1,
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
            "outputs": [{"name": "total", "datatype": "FP32", "shape": [-1]}],
        },
    )


@pytest.fixture(scope="session")
def demo_repository(demo_models: Path) -> Path:
    """The demo repository exactly as the builder writes it (built once a session: tests/conftest.py)."""
    return demo_models


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, demo_repository: Path) -> Path:
    """Demo models plus the test models."""
    root = tmp_path_factory.mktemp("models")
    for model in ("risk", "diabetes"):
        shutil.copytree(demo_repository / model, root / model)
    _build_echo_model(root / "echo" / "1")
    _build_sklearn_models(root)
    return root


@pytest.fixture(scope="session")
def worker(model_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker process serving `model_repository` over REST and gRPC for the whole session."""
    process = start_worker(model_repository, tmp_path_factory.mktemp("worker-logs"))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def breast_cancer_rows() -> np.ndarray:
    from sklearn.datasets import load_breast_cancer

    features: np.ndarray = load_breast_cancer(return_X_y=True)[0].astype(np.float32)
    return features
