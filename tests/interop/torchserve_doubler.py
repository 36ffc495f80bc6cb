"""The handler of the TorchServe model `doubler` used by the interop tests; it runs in TorchServe's
Python worker, from the venv of `server_venvs.py`, and imports nothing but the standard library.

Each row of numbers comes back doubled; anything else raises, which TorchServe answers 503
`Prediction failed`. It serves both of TorchServe's request shapes:
- plain (`/predictions/doubler`): `data` holds one `{"body": rows}` per request of the batch;
- the `kservev2` service envelope (`/v2/models/doubler/infer`): `data` holds the request's input
  tensors, each `{"name", "shape", "datatype", "data"}` with `data` already reshaped to rows, and
  the envelope names each result after its input and flattens it.

Every call appends a line to the file named by `DOUBLER_CALLS_FILE`, so a test can tell how many
times the model ran (a retried request runs twice).
"""

from __future__ import annotations

import json
import os
from typing import Any


def _double(rows: Any) -> list[list[float]]:
    if not isinstance(rows, list) or not rows:
        raise ValueError("expected a list of rows")
    doubled = []
    for row in rows:
        if not isinstance(row, list) or not all(
            isinstance(x, int | float) and not isinstance(x, bool) for x in row
        ):
            raise ValueError(f"row {row!r} is not a list of numbers")
        doubled.append([2 * x for x in row])
    return doubled


def _rows(item: Any) -> Any:
    if isinstance(item, dict) and "name" in item and "shape" in item:
        return item["data"]  # an input tensor of the kservev2 envelope
    body = item.get("body", item.get("data")) if isinstance(item, dict) else item
    if isinstance(body, bytes | bytearray):
        body = json.loads(body)
    return body


class Doubler:
    """TorchServe's custom service shape: `initialize(context)`, then `handle(data, context)`."""

    def initialize(self, context: Any) -> None:
        self.calls_file = os.environ.get("DOUBLER_CALLS_FILE")

    def handle(self, data: Any, context: Any) -> list[list[list[float]]]:
        if self.calls_file:
            with open(self.calls_file, "a") as calls:
                calls.write("1\n")
        return [_double(_rows(item)) for item in data]
