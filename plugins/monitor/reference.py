"""The reference a model's traffic is compared with: quantile bins per feature, fixed at load.

A reference is a file of rows (one row per example, one column per feature): NumPy `.npy` (a 2-D
numeric array), CSV (a header of feature names, then numbers) or Parquet (numeric columns). Each
feature's bins are its reference deciles (by default), so every bin holds about a tenth of the
reference and PSI weighs every part of the distribution alike; ties (a discrete feature) merge bins.
The first bin is open below and the last open above, so a value outside the reference's range still
lands in a bin, and is also counted as a range violation.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np


class ReferenceError(ValueError):
    """A reference that cannot be used: unreadable, not numeric rows, or columns the config refuses."""


@dataclass(frozen=True, slots=True)
class Reference:
    names: tuple[str, ...] | None
    """Feature names from a CSV header or Parquet schema; None for a bare array (features by index)."""
    edges: tuple[np.ndarray, ...]
    """Per feature, the inner bin edges (ascending, unique): len(edges[j]) + 1 bins."""
    counts: np.ndarray
    """(features, max bins) reference rows per bin, zero past a feature's last bin."""
    low: np.ndarray
    high: np.ndarray
    """Per feature, the smallest and largest finite reference value: outside them is a range violation."""
    rows: int
    source: str
    padded: np.ndarray
    """(features, max bins - 1) the inner edges padded with +inf: every feature binned in one pass."""

    @property
    def width(self) -> int:
        return len(self.edges)

    def bin_of(self, column: int, values: np.ndarray) -> np.ndarray:
        """The bin index of each (finite) value of one feature."""
        return np.searchsorted(self.edges[column], values, side="right")

    def bins_of(self, rows: np.ndarray) -> np.ndarray:
        """(examples, features) bin index of every finite value: how many inner edges are <= it, the
        same as `bin_of`, for all features at once (a +inf pad is never <= a finite value)."""
        return np.asarray((rows[:, :, None] >= self.padded[None, :, :]).sum(axis=2))


def from_rows(rows: np.ndarray, names: tuple[str, ...] | None, bins: int, source: str) -> Reference:
    """Bins from an (examples, features) array of reference rows."""
    matrix = np.asarray(rows, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix.reshape(-1, 1)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.shape[1] < 1:
        raise ReferenceError(f"{source}: needs a 2-D array of at least 2 rows, found shape {matrix.shape}")
    if names is not None and len(names) != matrix.shape[1]:
        raise ReferenceError(f"{source}: {len(names)} column names for {matrix.shape[1]} columns")
    probes = np.linspace(0, 1, bins + 1)[1:-1]
    edges: list[np.ndarray] = []
    low = np.empty(matrix.shape[1])
    high = np.empty(matrix.shape[1])
    for j in range(matrix.shape[1]):
        column = matrix[:, j]
        finite = column[np.isfinite(column)]
        if finite.size < 2:
            label = names[j] if names is not None else f"column {j}"
            raise ReferenceError(f"{source}: {label} has fewer than 2 finite values")
        edges.append(np.unique(np.quantile(finite, probes)))
        low[j], high[j] = finite.min(), finite.max()
    counts = np.zeros((matrix.shape[1], bins), dtype=np.int64)
    for j, column_edges in enumerate(edges):
        finite = matrix[:, j][np.isfinite(matrix[:, j])]
        counts[j, : len(column_edges) + 1] = np.bincount(
            np.searchsorted(column_edges, finite, side="right"), minlength=len(column_edges) + 1
        )
    padded = np.full((matrix.shape[1], bins - 1), np.inf)
    for j, column_edges in enumerate(edges):
        padded[j, : len(column_edges)] = column_edges
    return Reference(names, tuple(edges), counts, low, high, int(matrix.shape[0]), source, padded)


def load(path: Path, bins: int, names: tuple[str, ...] | None = None) -> Reference:
    """Read a reference file; `names`, when the config gives them, must match a CSV/Parquet header."""
    source = str(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            rows, found = np.load(path, allow_pickle=False), None
        elif suffix == ".csv":
            rows, found = _read_csv(path)
        elif suffix in (".parquet", ".pq"):
            rows, found = _read_parquet(path)
        else:
            raise ReferenceError(
                f"{source}: unknown reference format {suffix!r} (use .npy, .csv or .parquet)"
            )
    except ReferenceError:
        raise
    except (OSError, ValueError) as exc:
        raise ReferenceError(f"{source}: cannot read the reference: {exc}") from None
    if names is not None and found is not None and tuple(found) != names:
        missing = [name for name in names if name not in found]
        extra = [name for name in found if name not in names]
        raise ReferenceError(
            f"{source}: its columns are not the configured features (missing {missing}, unexpected {extra})"
        )
    return from_rows(rows, names or found, bins, source)


def _read_csv(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    with path.open(newline="") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if not header:
            raise ReferenceError(f"{path}: an empty CSV file (a header of feature names comes first)")
        try:
            rows = [[float(cell) if cell.strip() else np.nan for cell in row] for row in reader if row]
        except ValueError as exc:
            raise ReferenceError(f"{path}: every value after the header must be a number ({exc})") from None
    if any(len(row) != len(header) for row in rows):
        raise ReferenceError(f"{path}: every row must have the header's {len(header)} columns")
    return np.asarray(rows, dtype=np.float64), tuple(name.strip() for name in header)


def _read_parquet(path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        import pyarrow.parquet as pq  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        raise ReferenceError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    table = pq.read_table(path)
    columns = [np.asarray(table.column(name).to_numpy(), dtype=np.float64) for name in table.column_names]
    return np.column_stack(columns), tuple(table.column_names)
