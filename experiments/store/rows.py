"""Raw events as flat rows: the columns every store keeps and every export writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from experiments.events import Exposure, Feedback, Outcome
from experiments.store.base import EventKind

COLUMNS: dict[EventKind, tuple[str, ...]] = {
    "exposures": (
        "experiment",
        "phase",
        "arm",
        "unit_id",
        "request_id",
        "time",
        "forced",
        "excluded",
        "exposure_id",
        "segments",
    ),
    "outcomes": (
        "request_id",
        "experiment",
        "phase",
        "arm",
        "unit_id",
        "time",
        "latency_s",
        "status",
        "error",
        "response_bytes",
        "outputs",
        "forced",
        "excluded",
    ),
    "feedback": ("metric", "value", "time", "request_id", "unit_id", "experiment", "matched", "exposure_id"),
}


def exposure_row(event: Exposure) -> dict[str, Any]:
    return {
        "experiment": event.experiment,
        "phase": event.phase,
        "arm": event.arm,
        "unit_id": event.unit_id,
        "request_id": event.request_id,
        "time": event.time,
        "forced": event.forced,
        "excluded": event.excluded,
        "exposure_id": event.key,
        "segments": orjson.dumps(dict(event.segments)).decode() if event.segments else "",
    }


def segments_of(row: Mapping[str, Any]) -> dict[str, str]:
    """An exposure row's segments (JSON text in storage; rows of older versions have none)."""
    raw = row.get("segments")
    if not raw:
        return {}
    found = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return {str(name): str(value) for name, value in found.items()} if isinstance(found, dict) else {}


def outcome_row(event: Outcome) -> dict[str, Any]:
    outputs = [
        {"output": summary.output, "labels": list(summary.labels), "score": summary.score}
        for summary in event.outputs
    ]
    return {
        "request_id": event.request_id,
        "experiment": event.experiment,
        "phase": event.phase,
        "arm": event.arm,
        "unit_id": event.unit_id,
        "time": event.time,
        "latency_s": event.latency_s,
        "status": event.status,
        "error": event.error,
        "response_bytes": event.response_bytes,
        "outputs": orjson.dumps(outputs).decode() if outputs else "",
        "forced": event.forced,
        "excluded": event.excluded,
    }


def feedback_row(event: Feedback, experiment: str, matched: bool) -> dict[str, Any]:
    """One row per experiment the value joined (`matched`), or one unmatched row."""
    return {
        "metric": event.metric,
        "value": event.value,
        "time": event.time,
        "request_id": event.request_id,
        "unit_id": event.unit_id,
        "experiment": experiment,
        "matched": matched,
        "exposure_id": event.key,
    }


def feedback_rows(
    joined: Sequence[tuple[Feedback, str]], unmatched: Sequence[Feedback], unknown_experiment: str
) -> list[dict[str, Any]]:
    """Raw feedback rows: one per (value, experiment joined), one per value that joined nothing."""
    rows = [feedback_row(event, experiment, True) for event, experiment in joined]
    rows += [feedback_row(event, event.experiment or unknown_experiment, False) for event in unmatched]
    return rows


_INTEGER_COLUMNS = frozenset({"phase", "status", "response_bytes"})
_FLOAT_COLUMNS = frozenset({"time", "latency_s", "value"})
BOOL_COLUMNS = frozenset({"forced", "excluded", "error", "matched"})


def typed_row(kind: EventKind, raw: dict[str, Any]) -> dict[str, Any]:
    """A row read back from text storage (Redis streams) with its columns' types restored;
    empty strings stand for None."""
    row: dict[str, Any] = {}
    for column in COLUMNS[kind]:
        value: Any = raw.get(column)
        if value in (None, "") and column != "outputs":
            row[column] = None
        elif column in _INTEGER_COLUMNS:
            row[column] = int(value)
        elif column in _FLOAT_COLUMNS:
            row[column] = float(value)
        elif column in BOOL_COLUMNS:
            row[column] = value in (True, 1, "1", "True", "true")
        else:
            row[column] = value if value is not None else ""
    return row
