"""Locust's `<prefix>_stats.csv` -> one typed row per request name, plus the aggregated row.

Locust writes one line per (type, name) and a last line named "Aggregated" with an empty type.
Times are milliseconds; percentiles are "N/A" for a name that completed no request. Locust
refreshes that file once a second and not at exit, so the locustfiles also write the final
statistics in the same layout (`<prefix>_final_stats.csv`); that copy is preferred when present.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

AGGREGATED = "Aggregated"
FINAL_STATS_SUFFIX = "_final_stats.csv"
LOCUST_STATS_SUFFIX = "_stats.csv"
_REQUIRED = ("Type", "Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%")


@dataclass(frozen=True, slots=True)
class RequestRow:
    kind: str
    """Locust's request type: the HTTP method, "grpc", or "" for the aggregated row."""
    name: str
    requests: int
    failures: int
    requests_per_s: float
    average_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


@dataclass(frozen=True, slots=True)
class LocustStats:
    rows: tuple[RequestRow, ...]
    total: RequestRow


def _number(text: str) -> float | None:
    return None if text in ("", "N/A") else float(text)


def parse_stats_csv(text: str) -> LocustStats:
    """ValueError when the text is not a Locust stats CSV or lacks the aggregated row."""
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in _REQUIRED if column not in (reader.fieldnames or ())]
    if missing:
        raise ValueError(f"not a Locust stats CSV: missing columns {missing}")
    rows: list[RequestRow] = []
    total: RequestRow | None = None
    for record in reader:
        row = RequestRow(
            kind=record["Type"],
            name=record["Name"],
            requests=int(record["Request Count"]),
            failures=int(record["Failure Count"]),
            requests_per_s=float(record["Requests/s"]),
            average_ms=_number(record.get("Average Response Time", "")) or 0.0,
            p50_ms=_number(record["50%"]),
            p95_ms=_number(record["95%"]),
            p99_ms=_number(record["99%"]),
            max_ms=_number(record.get("Max Response Time", "")),
        )
        if row.name == AGGREGATED and not row.kind:
            total = row
        else:
            rows.append(row)
    if total is None:
        raise ValueError("Locust stats CSV has no Aggregated row")
    return LocustStats(tuple(rows), total)


def read_stats_csv(prefix: Path) -> LocustStats:
    """The statistics of a run with `--csv prefix`: the final copy, else Locust's last refresh."""
    final = prefix.with_name(prefix.name + FINAL_STATS_SUFFIX)
    path = final if final.exists() else prefix.with_name(prefix.name + LOCUST_STATS_SUFFIX)
    return parse_stats_csv(path.read_text())
