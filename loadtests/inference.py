"""The demo models' inputs (rows of the real datasets) and a check that an answer honours their contract.

Contract (inference_workers/examples/build_models.py):
    risk      input features FP32 [n, 30] -> probabilities FP32 [n, 2] (rows sum to 1), label INT64 [n]
    diabetes  input features FP32 [n, 10] -> value FP32 [n]
Rows come from scikit-learn's bundled copies of the breast-cancer and diabetes datasets (no
download), so a load test sends what the models were trained on, not noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

# float32 rounding across 2 probabilities stays orders of magnitude below this; a wrong output not.
PROBABILITY_SUM_TOLERANCE = 1e-3


@dataclass(frozen=True, slots=True)
class OutputSpec:
    datatype: str
    trailing_shape: tuple[int, ...]
    """The shape after the batch dimension."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    name: str
    features: int
    outputs: Mapping[str, OutputSpec]
    probabilities: str | None = None
    """The output whose rows are class probabilities (each row sums to 1)."""
    label: str | None = None
    """The output holding predicted classes, checked against the class count of `probabilities`."""


RISK = ModelSpec(
    "risk",
    30,
    {"probabilities": OutputSpec("FP32", (2,)), "label": OutputSpec("INT64", ())},
    probabilities="probabilities",
    label="label",
)
DIABETES = ModelSpec("diabetes", 10, {"value": OutputSpec("FP32", ())})


@dataclass(frozen=True, slots=True)
class Output:
    """One output tensor of an answer, whatever protocol carried it."""

    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


def dataset_rows(model: ModelSpec) -> list[list[float]]:
    """Every row of the model's dataset, in scikit-learn's feature order."""
    from sklearn.datasets import load_breast_cancer, load_diabetes

    loader = {"risk": load_breast_cancer, "diabetes": load_diabetes}[model.name]
    features = loader(return_X_y=True)[0]
    if features.shape[1] != model.features:
        raise ValueError(f"{model.name}: dataset has {features.shape[1]} features, expected {model.features}")
    rows: list[list[float]] = features.tolist()
    return rows


def rest_body(rows: Sequence[Sequence[float]]) -> bytes:
    """An OIP v2 JSON inference request for these rows."""
    width = len(rows[0]) if rows else 0
    flat = [value for row in rows for value in row]
    tensor = {"name": "features", "datatype": "FP32", "shape": [len(rows), width], "data": flat}
    return orjson.dumps({"inputs": [tensor]})


def rest_outputs(body: bytes) -> dict[str, Output]:
    """The outputs of an OIP v2 JSON answer; ValueError when the body is not one."""
    try:
        answer: Any = orjson.loads(body)
        return {
            tensor["name"]: Output(
                tensor["datatype"], tuple(tensor["shape"]), np.asarray(tensor["data"], dtype=np.float64)
            )
            for tensor in answer["outputs"]
        }
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not an OIP v2 inference answer: {exc!r}") from None


def contract_problem(model: ModelSpec, outputs: Mapping[str, Output], rows: int) -> str | None:
    """What is wrong with an answer for `rows` rows, or None when it meets the model's contract."""
    if set(outputs) != set(model.outputs):
        return f"outputs {sorted(outputs)}, expected {sorted(model.outputs)}"
    for name, spec in model.outputs.items():
        output = outputs[name]
        expected_shape = (rows, *spec.trailing_shape)
        if output.datatype != spec.datatype:
            return f"{name}: datatype {output.datatype}, expected {spec.datatype}"
        if output.shape != expected_shape or output.data.size != int(np.prod(expected_shape)):
            return f"{name}: shape {list(output.shape)}, expected {list(expected_shape)}"
    if model.probabilities is None:
        return None
    probabilities = outputs[model.probabilities]
    classes = probabilities.shape[-1]
    sums = probabilities.data.reshape(rows, classes).sum(axis=1)
    if not np.allclose(sums, 1.0, atol=PROBABILITY_SUM_TOLERANCE):
        return f"{model.probabilities}: rows do not sum to 1: {sums.tolist()}"
    if model.label is not None:
        labels = outputs[model.label].data
        if not np.isin(labels, np.arange(classes)).all():
            return f"{model.label}: classes outside 0..{classes - 1}: {labels.tolist()}"
    return None
