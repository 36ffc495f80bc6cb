"""The demo model builder: the binding contract, real models, deterministic output, skip when current."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import yaml

from inference_workers.config import read_model_config
from inference_workers.examples.build_models import MANIFEST, build


def session(root: Path, model: str, version: int) -> ort.InferenceSession:
    return ort.InferenceSession(
        str(root / model / str(version) / "model.onnx"), providers=["CPUExecutionProvider"]
    )


# Every breast-cancer classifier shares risk's signature.
CLASSIFIERS = (("risk", 1), ("risk", 2), ("risk-mlp", 1))


def test_the_repository_holds_the_demo_models(demo_repository: Path) -> None:
    versions = {
        str(path.parent.relative_to(demo_repository)) for path in demo_repository.glob("*/*/model.yaml")
    }
    assert versions == {"risk/1", "risk/2", "risk-mlp/1", "diabetes/1"}


def test_configs_follow_the_contract(demo_repository: Path) -> None:
    for model, version in CLASSIFIERS:
        config = read_model_config(demo_repository / model / str(version))
        assert config.backend == "onnxruntime"
        assert [(t.name, t.datatype, t.shape) for t in config.inputs] == [("features", "FP32", (-1, 30))]
        assert [(t.name, t.datatype, t.shape) for t in config.outputs] == [
            ("probabilities", "FP32", (-1, 2)),
            ("label", "INT64", (-1,)),
        ]
        assert config.max_batch_size == 64
    diabetes = read_model_config(demo_repository / "diabetes" / "1")
    assert [(t.name, t.datatype, t.shape) for t in diabetes.inputs] == [("features", "FP32", (-1, 10))]
    assert [(t.name, t.datatype, t.shape) for t in diabetes.outputs] == [("value", "FP32", (-1,))]


def test_graphs_match_their_configs(demo_repository: Path) -> None:
    for model, version in CLASSIFIERS:
        risk = session(demo_repository, model, version)
        assert [(node.name, node.type) for node in risk.get_inputs()] == [("features", "tensor(float)")]
        assert {(node.name, node.type, len(node.shape)) for node in risk.get_outputs()} == {
            ("probabilities", "tensor(float)", 2),
            ("label", "tensor(int64)", 1),
        }
    (value,) = session(demo_repository, "diabetes", 1).get_outputs()
    assert (value.name, value.type, len(value.shape)) == ("value", "tensor(float)", 1)


def test_models_are_real_and_the_classifiers_differ(
    demo_repository: Path, breast_cancer_rows: np.ndarray
) -> None:
    from sklearn.datasets import load_breast_cancer

    labels = load_breast_cancer(return_X_y=True)[1]
    predictions = {}
    for model, version in CLASSIFIERS:
        label, probabilities = session(demo_repository, model, version).run(
            None, {"features": breast_cancer_rows}
        )
        assert (label == labels).mean() > 0.95, f"{model} v{version}: a trained classifier fits its data"
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_array_equal(label, probabilities.argmax(axis=1))
        predictions[model, version] = probabilities
    assert not np.allclose(predictions["risk", 1], predictions["risk", 2])
    assert not np.allclose(predictions["risk", 2], predictions["risk-mlp", 1])


def test_rebuild_is_skipped_when_current_and_done_when_not(demo_repository: Path, tmp_path: Path) -> None:
    assert build(demo_repository) is False
    copy = tmp_path / "copy"
    shutil.copytree(demo_repository, copy)
    digests = {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in copy.glob("risk*/*/model.onnx")
    }
    (copy / "risk" / "2" / "model.onnx").write_bytes(b"damaged")
    assert build(copy) is True, "a damaged file makes the repository stale"
    rebuilt = {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest() for path in copy.glob("risk*/*/model.onnx")
    }
    assert rebuilt == digests, "training is deterministic: the rebuild writes the same bytes"
    assert build(copy) is False
    manifest = yaml.safe_load((copy / MANIFEST).read_text())
    assert (
        manifest["files"]["risk/2/model.onnx"]
        == hashlib.sha256((copy / "risk/2/model.onnx").read_bytes()).hexdigest()
    )
