"""The monitoring state of one model series (model, version, experiment arm): features and outputs.

Feature sketches are fixed-bin histograms over the reference's quantile bins, kept in two windows
of `window` rows each: drift compares the reference with the last one to two windows of traffic,
so a model that drifts after a long stable life is still seen (a cumulative histogram would dilute
the change), and no row is kept, only counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from plugins.monitor.decode import Observation
from plugins.monitor.outputs import LlmStats, OutputStats
from plugins.monitor.reference import Reference
from plugins.monitor.stats import js_distance, ks, psi, shares


class ShapeMismatch(ValueError):
    """Rows whose feature count differs from the reference's (or from the series' first rows)."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    psi_warn: float
    psi_alert: float
    min_samples: int
    window: int


class ModelSeries:
    __slots__ = (
        "_current",
        "_current_rows",
        "_previous",
        "_previous_rows",
        "above",
        "arm",
        "below",
        "inf",
        "llm",
        "model",
        "names",
        "nan",
        "outputs",
        "peer",
        "pending",
        "reference",
        "rows",
        "thresholds",
        "version",
        "width",
    )

    def __init__(
        self,
        model: str,
        version: str,
        arm: str,
        reference: Reference | None,
        thresholds: Thresholds,
        learn: bool = False,
    ) -> None:
        self.model = model
        self.version = version
        self.arm = arm
        self.reference = reference
        self.thresholds = thresholds
        self.width = reference.width if reference is not None else 0
        self.names: tuple[str, ...] | None = reference.names if reference is not None else None
        self.rows = 0
        bins = reference.counts.shape[1] if reference is not None else 1
        self._current = np.zeros((self.width, bins), dtype=np.int64)
        self._previous = np.zeros_like(self._current)
        self._current_rows = 0
        self._previous_rows = 0
        self.nan = np.zeros(self.width, dtype=np.int64)
        self.inf = np.zeros(self.width, dtype=np.int64)
        self.below = np.zeros(self.width, dtype=np.int64)
        self.above = np.zeros(self.width, dtype=np.int64)
        self.outputs: dict[str, OutputStats] = {}
        self.llm: LlmStats | None = None
        self.peer: ModelSeries | None = None
        """The series drift is measured against (the experiment's reference arm), else the reference."""
        self.pending: list[np.ndarray] | None = [] if learn and reference is None else None
        """Without a reference yet: the last `window` rows, binned once a reference is adopted."""

    def observe(self, sample: Observation) -> None:
        """Add one decoded exchange; raises `ShapeMismatch` (and counts nothing) for rows of the
        wrong width."""
        if sample.rows is not None:
            self._observe_rows(sample.rows, sample.names)
        for name, data in sample.outputs:
            stats = self.outputs.get(name)
            if stats is None:
                stats = self.outputs[name] = OutputStats()
            stats.observe(data)
        if sample.prompt_tokens is not None or sample.completion_tokens is not None or sample.finish_reasons:
            if self.llm is None:
                self.llm = LlmStats()
            self.llm.observe(sample.prompt_tokens, sample.completion_tokens, sample.finish_reasons)

    def _observe_rows(self, rows: np.ndarray, names: tuple[str, ...] | None) -> None:
        if self.width == 0 and self.reference is None:
            self._widen(rows.shape[1], names)
        if rows.shape[1] != self.width:
            raise ShapeMismatch(
                f"model {self.model!r}: requests carry {rows.shape[1]} features, "
                f"the reference has {self.width}"
            )
        if names is not None and self.names is not None and names != self.names:
            raise ShapeMismatch(
                f"model {self.model!r}: requests name features {list(names)}, expected {list(self.names)}"
            )
        self.rows += rows.shape[0]
        nan = np.isnan(rows)
        inf = np.isinf(rows)
        self.nan += nan.sum(axis=0)
        self.inf += inf.sum(axis=0)
        if self.reference is None:
            if self.pending is not None:
                self.pending.append(rows)
                while sum(len(block) for block in self.pending[1:]) >= self.thresholds.window:
                    self.pending.pop(0)
            return
        self._bin(rows)

    def pending_rows(self) -> int:
        return sum(len(block) for block in self.pending or ())

    def adopt(self, reference: Reference) -> None:
        """Take a reference learnt after this series began, and bin the rows kept until then."""
        if reference.width != self.width:
            raise ShapeMismatch(f"model {self.model!r}: arm {self.arm!r} has {self.width} features")
        kept = self.pending or []
        self.reference, self.pending, self.names = reference, None, self.names or reference.names
        self._current = np.zeros((self.width, reference.counts.shape[1]), dtype=np.int64)
        self._previous = np.zeros_like(self._current)
        for rows in kept:
            self._bin(rows)

    def _bin(self, rows: np.ndarray) -> None:
        reference = self.reference
        assert reference is not None
        finite = np.isfinite(rows)
        with np.errstate(invalid="ignore"):
            self.below += (finite & (rows < reference.low)).sum(axis=0)
            self.above += (finite & (rows > reference.high)).sum(axis=0)
        bins = self._current.shape[1]
        with np.errstate(invalid="ignore"):
            cells = reference.bins_of(rows) + np.arange(self.width) * bins
        # A step may bring more rows than the current window has room for: fill it, turn it over,
        # and go on, so a window never holds more than `window` rows.
        start = 0
        while start < rows.shape[0]:
            stop = min(start + self.thresholds.window - self._current_rows, rows.shape[0])
            part = cells[start:stop][finite[start:stop]]
            self._current += np.bincount(part, minlength=self.width * bins).reshape(self.width, bins)
            self._current_rows += stop - start
            start = stop
            if self._current_rows >= self.thresholds.window:
                self._previous, self._previous_rows = self._current, self._current_rows
                self._current = np.zeros_like(self._previous)
                self._current_rows = 0

    def _widen(self, width: int, names: tuple[str, ...] | None) -> None:
        """Without a reference, the first rows fix the feature count (for NaN and inf rates)."""
        self.width = width
        self.names = names
        for attribute in ("nan", "inf", "below", "above"):
            setattr(self, attribute, np.zeros(width, dtype=np.int64))

    def window_counts(self) -> np.ndarray:
        """(features, bins) counts of the last one to two windows of rows."""
        return self._current + self._previous

    def feature_report(self, counts: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Per feature: drift statistics against the reference, state, and data-quality rates."""
        window = self.window_counts() if counts is None else counts
        reference = self.reference
        baseline = self.peer.window_counts() if self.peer is not None and counts is None else None
        out = []
        for j in range(self.width):
            entry: dict[str, Any] = {"index": j}
            if self.names is not None:
                entry["name"] = self.names[j]
            seen = int(window[j].sum()) if reference is not None else 0
            entry["samples"] = seen
            if reference is not None:
                expected = reference.counts[j] if baseline is None else baseline[j]
                # Against a live arm, both sides need the minimum sample.
                seen_both = seen if baseline is None else min(seen, int(expected.sum()))
                value = psi(expected, window[j]) if seen_both else 0.0
                entry["psi"] = value
                entry["ks"] = ks(expected, window[j]) if seen_both else 0.0
                entry["js"] = js_distance(expected, window[j]) if seen_both else 0.0
                entry["state"] = self._state(value, seen_both)
                entry["against"] = "reference" if self.peer is None else f"arm {self.peer.arm}"
                bins = len(reference.edges[j]) + 1
                entry["histogram"] = {
                    "edges": reference.edges[j].tolist(),
                    "reference": shares(expected[:bins]).tolist(),
                    "current": shares(window[j][:bins]).tolist(),
                }
                entry["range_violation_rate"] = (
                    float(self.below[j] + self.above[j]) / self.rows if self.rows else 0.0
                )
            else:
                entry.update(psi=None, ks=None, js=None, state="ok")
            entry["enough_samples"] = seen >= self.thresholds.min_samples
            entry["nan_rate"] = float(self.nan[j]) / self.rows if self.rows else 0.0
            entry["inf_rate"] = float(self.inf[j]) / self.rows if self.rows else 0.0
            out.append(entry)
        return out

    def _state(self, value: float, seen: int) -> str:
        # Below the minimum sample, PSI's noise alone can cross the thresholds (see stats.psi): no alarm.
        if seen < self.thresholds.min_samples or value < self.thresholds.psi_warn:
            return "ok"
        return "alert" if value >= self.thresholds.psi_alert else "warn"

    def output_report(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: stats.summary() for name, stats in sorted(self.outputs.items())}
        if self.llm is not None:
            out["llm"] = self.llm.summary()
        return out


def merged(model: str, version: str, arm: str, parts: list[ModelSeries]) -> ModelSeries:
    """One series holding the sum of `parts` (series of one model over the same reference bins):
    the model's view over versions and arms, or one series seen by several routes."""
    first = parts[0]
    total = ModelSeries(model, version, arm, first.reference, first.thresholds)
    total._widen(first.width, first.names)
    total._current = np.zeros_like(first._current)
    total._previous = np.zeros_like(first._current)
    for part in parts:
        if part.width != total.width or part._current.shape != total._current.shape:
            continue  # another reference's bins: not comparable, reported only on its own
        total.rows += part.rows
        total._current += part.window_counts()
        for mine, theirs in ((total.nan, part.nan), (total.inf, part.inf)):
            mine += theirs
        total.below += part.below
        total.above += part.above
        for name, stats in part.outputs.items():
            total.outputs.setdefault(name, OutputStats()).add(stats)
        if part.llm is not None:
            if total.llm is None:
                total.llm = LlmStats()
            total.llm.add(part.llm)
    return total
