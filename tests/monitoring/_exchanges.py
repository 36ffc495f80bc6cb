"""Request and response bodies of the three protocols the monitor reads, for the monitoring tests."""

from __future__ import annotations

import numpy as np
import orjson


def oip_request(rows: np.ndarray, name: str = "features") -> bytes:
    return orjson.dumps(
        {
            "inputs": [
                {
                    "name": name,
                    "datatype": "FP64",
                    "shape": list(rows.shape),
                    "data": rows.reshape(-1).tolist(),
                }
            ]
        }
    )


def oip_response(probabilities: np.ndarray, version: str = "1", model: str = "risk") -> bytes:
    labels = probabilities.argmax(axis=1)
    return orjson.dumps(
        {
            "model_name": model,
            "model_version": version,
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": list(probabilities.shape),
                    "data": probabilities.reshape(-1).tolist(),
                },
                {"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels.tolist()},
            ],
        }
    )


def binary_probabilities(rng: np.random.Generator, count: int) -> np.ndarray:
    p = rng.random(count)
    return np.column_stack([p, 1 - p])
