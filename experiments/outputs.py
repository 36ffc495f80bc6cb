"""Summaries of model outputs in OIP v2 responses, for `output:NAME` metrics and shadow comparison.

For each named output tensor: byte strings and integer outputs with one value per row are labels;
a numeric output with several values per row (class probabilities or logits) gives its argmax per
row as the label and the mean top value as the score; a numeric output with one value per row gives
its mean as the score. Bodies that are not valid OIP v2 responses give no summary: an error answer
is already counted as an error, and the data path must never fail on a summary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from experiments.events import OutputSummary
from gateway.core.errors import BadRequest
from gateway.core.protocols.oip_v2 import Tensor, decode_response


def _as_text(element: object) -> str:
    return element.decode(errors="replace") if isinstance(element, bytes) else str(element)


def summarize_tensor(tensor: Tensor) -> OutputSummary | None:
    data = np.asarray(tensor.data)
    if data.size == 0:
        return None
    if data.dtype.kind in "OSU":
        return OutputSummary(tensor.name, labels=tuple(_as_text(e) for e in data.reshape(-1)))
    rows = data.reshape(data.shape[0], -1) if data.ndim >= 1 else data.reshape(1, 1)
    if rows.shape[1] == 1:
        column = rows[:, 0]
        if data.dtype.kind in "iub":
            return OutputSummary(tensor.name, labels=tuple(str(int(v)) for v in column))
        score = float(np.mean(column.astype(np.float64)))
        return OutputSummary(tensor.name, score=score if math.isfinite(score) else None)
    values = rows.astype(np.float64)
    top = float(np.mean(values.max(axis=1)))
    labels = tuple(str(int(i)) for i in values.argmax(axis=1))
    return OutputSummary(tensor.name, labels=labels, score=top if math.isfinite(top) else None)


def summarize_outputs(
    body: bytes, names: Sequence[str], header_length: str | None = None
) -> tuple[OutputSummary, ...]:
    """Summaries of the named outputs found in an OIP v2 response body (JSON or binary extension)."""
    if not names:
        return ()
    try:
        response = decode_response(body, header_length)
    except (BadRequest, ValueError):
        return ()
    by_name = {tensor.name: tensor for tensor in response.outputs}
    summaries = []
    for name in names:
        tensor = by_name.get(name)
        summary = summarize_tensor(tensor) if tensor is not None else None
        if summary is not None:
            summaries.append(summary)
    return tuple(summaries)


def output_metric_names(metrics: Sequence[str]) -> tuple[str, ...]:
    """The output names behind `output:NAME` metrics: what the data path should summarise."""
    return tuple(metric.partition(":")[2] for metric in metrics if metric.startswith("output:"))
