"""Train the demo models on datasets shipped with scikit-learn and write a ready model repository.

    python -m inference_workers.examples.build_models --out DIR [--force]

    DIR/risk/1       breast-cancer classifier: StandardScaler + logistic regression
    DIR/risk/2       breast-cancer classifier: gradient boosting
    DIR/risk-mlp/1   breast-cancer classifier: StandardScaler + a wide multi-layer perceptron, whose
                     per-row compute (about 12.6M multiply-adds) dominates any HTTP cost: the model
                     dynamic batching is for, and the one bench/batching.py holds to its targets
    DIR/diabetes/1   diabetes progression regression: StandardScaler + ridge

Contract (binding; the gateway demo, load tests and experiments rely on it):
    risk      input  features       FP32 [-1, 30]  (the 30 breast-cancer features, scikit-learn's order)
              output probabilities  FP32 [-1, 2]   (P(malignant), P(benign): the dataset's class order)
              output label          INT64 [-1]
    risk-mlp  the same signature as risk
    diabetes  input  features       FP32 [-1, 10]  (the 10 diabetes features, scikit-learn's order)
              output value          FP32 [-1]

Training is seeded and deterministic. A manifest records what was built and by which library
versions; when it matches and every file is intact, the build is skipped.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import orjson
import yaml

MANIFEST: Final = ".turnout-models.json"
# Bump when the models, their configs or this builder change, so existing repositories rebuild.
BUILD_REVISION: Final = 2
SEED: Final = 20240611
# Opsets every onnxruntime release since 1.14 executes; pinned so output does not drift with skl2onnx.
TARGET_OPSET: Final = {"": 17, "ai.onnx.ml": 3}
# Big enough for the gateway's batcher to merge dozens of requests, small enough for instant runs.
MAX_BATCH_SIZE: Final = 64
LIBRARIES: Final = ("scikit-learn", "skl2onnx", "onnx", "numpy")
# risk-mlp's hidden layers: about 12.6M multiply-adds a row, a few thousand rows/s on one CPU core at
# batch 32 (and far fewer at batch 1, where every row reads all 34 MB of weights), so that compute,
# not HTTP, bounds its throughput, as with the GPU-class models batching exists for.
MLP_HIDDEN_LAYERS: Final = (2048, 2048, 2048)
# Epochs of training: enough for > 98% training accuracy on the standardised features, few enough
# to keep the build to a few seconds; the model is a load for the benchmark, not a tuned classifier.
MLP_EPOCHS: Final = 4


@dataclass(frozen=True, slots=True)
class DemoModel:
    name: str
    version: int
    description: str
    train: Callable[[], tuple[Any, int]]
    """Fit the model; return its ONNX ModelProto and its number of input features."""
    outputs: tuple[dict[str, Any], ...]


def build(out: Path, force: bool = False) -> bool:
    """Write the repository under `out`; returns False when it was already current."""
    expected = _expected_manifest()
    if not force and _is_current(out, expected):
        return False
    files: dict[str, str] = {}
    for model in _models():
        graph, features = model.train()
        graph.graph.name = f"{model.name}_v{model.version}"  # skl2onnx picks a random one
        onnx_bytes = graph.SerializeToString()
        version_dir = out / model.name / str(model.version)
        version_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "backend": "onnxruntime",
            "description": model.description,
            "max_batch_size": MAX_BATCH_SIZE,
            "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, features]}],
            "outputs": list(model.outputs),
        }
        config_bytes = yaml.safe_dump(config, sort_keys=False).encode()
        for filename, content in (("model.onnx", onnx_bytes), ("model.yaml", config_bytes)):
            _write_atomically(version_dir / filename, content)
            files[f"{model.name}/{model.version}/{filename}"] = hashlib.sha256(content).hexdigest()
    _write_atomically(out / MANIFEST, orjson.dumps({**expected, "files": files}, option=orjson.OPT_INDENT_2))
    return True


def _models() -> list[DemoModel]:
    risk_outputs = (
        {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]},
        {"name": "label", "datatype": "INT64", "shape": [-1]},
    )
    return [
        DemoModel("risk", 1, "breast cancer: scaled logistic regression", _train_risk_v1, risk_outputs),
        DemoModel("risk", 2, "breast cancer: gradient boosting", _train_risk_v2, risk_outputs),
        DemoModel(
            "risk-mlp", 1, "breast cancer: scaled wide multi-layer perceptron", _train_risk_mlp, risk_outputs
        ),
        DemoModel(
            "diabetes",
            1,
            "diabetes progression: scaled ridge regression",
            _train_diabetes,
            ({"name": "value", "datatype": "FP32", "shape": [-1]},),
        ),
    ]


def _train_risk_v1() -> tuple[Any, int]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = _breast_cancer()
    classifier = LogisticRegression(max_iter=1000, random_state=SEED)
    pipeline = make_pipeline(StandardScaler(), classifier).fit(features, labels)
    return _classifier_to_onnx(pipeline, classifier, features.shape[1]), features.shape[1]


def _train_risk_v2() -> tuple[Any, int]:
    from sklearn.ensemble import GradientBoostingClassifier

    features, labels = _breast_cancer()
    classifier = GradientBoostingClassifier(n_estimators=100, max_depth=3, random_state=SEED)
    classifier.fit(features, labels)
    return _classifier_to_onnx(classifier, classifier, features.shape[1]), features.shape[1]


def _train_risk_mlp() -> tuple[Any, int]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, labels = _breast_cancer()
    classifier = MLPClassifier(hidden_layer_sizes=MLP_HIDDEN_LAYERS, max_iter=MLP_EPOCHS, random_state=SEED)
    with warnings.catch_warnings():
        # Stopping after MLP_EPOCHS is deliberate (build time); adam has not converged by then.
        warnings.simplefilter("ignore", ConvergenceWarning)
        pipeline = make_pipeline(StandardScaler(), classifier).fit(features, labels)
    return _classifier_to_onnx(pipeline, classifier, features.shape[1]), features.shape[1]


def _train_diabetes() -> tuple[Any, int]:
    import onnx
    from onnx import helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    features, targets = load_diabetes(return_X_y=True)
    features = features.astype(np.float32)
    pipeline = make_pipeline(StandardScaler(), Ridge(alpha=1.0)).fit(features, targets)
    graph = convert_sklearn(
        pipeline,
        initial_types=[("features", FloatTensorType([None, features.shape[1]]))],
        target_opset=TARGET_OPSET,
    )
    # skl2onnx emits a [N, 1] column; the contract is a rank-1 [N] output, so reshape in the graph.
    column = graph.graph.output[0].name
    graph.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat_shape"))
    graph.graph.node.append(helper.make_node("Reshape", [column, "flat_shape"], ["value"], name="flatten"))
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info("value", onnx.TensorProto.FLOAT, [None]))
    onnx.checker.check_model(graph)
    return graph, features.shape[1]


def _breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    features, labels = load_breast_cancer(return_X_y=True)
    return features.astype(np.float32), labels


def _classifier_to_onnx(model: Any, classifier: Any, features: int) -> Any:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    graph = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, features]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    names = [output.name for output in graph.graph.output]
    if names != ["label", "probabilities"]:
        raise RuntimeError(f"skl2onnx named the outputs {names}; the contract needs label and probabilities")
    return graph


def _expected_manifest() -> dict[str, Any]:
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = "absent"
    return {"revision": BUILD_REVISION, "seed": SEED, "libraries": versions}


def _is_current(out: Path, expected: dict[str, Any]) -> bool:
    try:
        manifest = orjson.loads((out / MANIFEST).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    if not isinstance(manifest, dict) or {key: manifest.get(key) for key in expected} != expected:
        return False
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return False
    for relative, digest in files.items():
        try:
            if hashlib.sha256((out / relative).read_bytes()).hexdigest() != digest:
                return False
        except OSError:
            return False
    return True


def _write_atomically(path: Path, content: bytes) -> None:
    """Write beside the target and rename, so a worker never reads half a model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference_workers.examples.build_models",
        description="Build the demo model repository.",
    )
    parser.add_argument("--out", type=Path, required=True, help="repository directory to write")
    parser.add_argument("--force", action="store_true", help="rebuild even when the repository is current")
    args = parser.parse_args(argv)
    built = build(args.out, force=args.force)
    print(f"{'built' if built else 'up to date'}: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
