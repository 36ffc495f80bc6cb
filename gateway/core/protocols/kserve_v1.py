"""KServe V1 (TensorFlow Serving style) prediction bodies <-> numpy arrays.

A request is `{"instances": [...]}` (row format: one entry per example) or `{"inputs": ...}`
(columnar: a list, or an object of named columns). Rows that are objects become named columns, so
every request decodes to either one array or a mapping of input name -> array, with the examples
along the first axis. A response is `{"predictions": [...]}`. Pure functions, no I/O; the JSON is
read within `json_bounds`' depth and size limits, and every client mistake is a `BadRequest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from gateway.core import json_bounds
from gateway.core.errors import BadRequest

V1Instances = np.ndarray | dict[str, np.ndarray]


@dataclass(frozen=True, slots=True)
class V1Request:
    instances: V1Instances
    """One array with the examples along axis 0, or named columns of equal length."""

    @property
    def batch_size(self) -> int:
        if isinstance(self.instances, np.ndarray):
            return int(self.instances.shape[0]) if self.instances.ndim else 1
        return next((len(column) for column in self.instances.values()), 0)


def decode_v1_request(body: bytes) -> V1Request:
    """A V1 predict body -> a `V1Request`."""
    document = _load(body, "request")
    if "instances" in document and "inputs" in document:
        raise BadRequest("request: send 'instances' or 'inputs', not both")
    if "instances" in document:
        value, where = document["instances"], "instances"
    elif "inputs" in document:
        value, where = document["inputs"], "inputs"
    else:
        raise BadRequest("request: needs 'instances' (a list of examples) or 'inputs'")
    if isinstance(value, dict):
        return V1Request(_columns(value, where))
    if not isinstance(value, list) or not value:
        raise BadRequest(f"request: '{where}' must be a non-empty list")
    if all(isinstance(row, dict) for row in value):
        return V1Request(_rows_to_columns(value, where))
    return V1Request(_array(value, where))


def encode_v1_request(instances: V1Instances) -> bytes:
    """A batch -> `{"instances": [...]}` (named columns are sent as row objects)."""
    if isinstance(instances, np.ndarray):
        return orjson.dumps({"instances": instances.tolist()})
    names = list(instances)
    columns = [instances[name].tolist() for name in names]
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    return orjson.dumps({"instances": rows})


def encode_v1_response(predictions: np.ndarray | list[Any]) -> bytes:
    """Predictions -> `{"predictions": [...]}`."""
    values = predictions.tolist() if isinstance(predictions, np.ndarray) else predictions
    return orjson.dumps({"predictions": values})


def decode_v1_response(body: bytes) -> np.ndarray:
    """`{"predictions": [...]}` -> an array with one entry per example."""
    document = _load(body, "response")
    predictions = document.get("predictions")
    if not isinstance(predictions, list):
        raise BadRequest("response: 'predictions' must be a list")
    return _array(predictions, "predictions")


def _load(body: bytes, what: str) -> dict[str, Any]:
    try:
        document = json_bounds.loads(body, f"the {what} body")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"{what} body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest(f"{what} body must be a JSON object")
    return document


def _array(value: Any, where: str) -> np.ndarray:
    try:
        array = np.asarray(value)
    except ValueError:
        raise BadRequest(f"{where}: ragged lists; every example must have the same shape") from None
    if array.dtype.kind not in "biufU":
        raise BadRequest(f"{where}: values must be numbers, booleans or strings")
    return array


def _columns(value: dict[str, Any], where: str) -> dict[str, np.ndarray]:
    columns = {str(name): _array(column, f"{where}.{name}") for name, column in value.items()}
    lengths = {len(column) if column.ndim else 1 for column in columns.values()}
    if len(lengths) > 1:
        raise BadRequest(f"{where}: named inputs have different numbers of examples {sorted(lengths)}")
    return columns


def _rows_to_columns(rows: list[dict[str, Any]], where: str) -> dict[str, np.ndarray]:
    names = sorted(rows[0])
    for index, row in enumerate(rows):
        if row.keys() != rows[0].keys():
            raise BadRequest(f"{where}[{index}]: keys {sorted(row)} differ from the first row's {names}")
    return {name: _array([row[name] for row in rows], f"{where}.{name}") for name in names}
