"""Raw events out of the store, for analysts: CSV always, Parquet when pyarrow is installed."""

from __future__ import annotations

import csv
import importlib
from pathlib import Path
from typing import Any, Literal

from experiments.store.base import EventKind, EventStore
from experiments.store.rows import COLUMNS

ExportFormat = Literal["csv", "parquet"]


class ParquetUnavailable(RuntimeError):
    """Parquet export needs pyarrow, which is an optional dependency."""


def write_csv(kind: EventKind, rows: list[dict[str, Any]], path: Path) -> int:
    """Rows as CSV with a header line; None becomes an empty cell. Returns the number of rows."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS[kind], extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return len(rows)


def write_parquet(kind: EventKind, rows: list[dict[str, Any]], path: Path) -> int:
    try:
        pyarrow = importlib.import_module("pyarrow")
        parquet = importlib.import_module("pyarrow.parquet")
    except ImportError as error:
        raise ParquetUnavailable(
            "Parquet export needs pyarrow: pip install pyarrow (or export CSV)"
        ) from error
    columns = {column: [row.get(column) for row in rows] for column in COLUMNS[kind]}
    parquet.write_table(pyarrow.table(columns), str(path))
    return len(rows)


async def export_events(
    store: EventStore, experiment: str, kind: EventKind, path: Path, fmt: ExportFormat = "csv"
) -> int:
    """Write one experiment's raw events of one kind to `path`; the number of rows written."""
    rows = await store.export_rows(experiment, kind)
    if fmt == "parquet":
        return write_parquet(kind, rows, path)
    return write_csv(kind, rows, path)
