"""What a model answered, summarised per output: classes, confidence, entropy, values, LLM usage.

An output is read by its shape and type, once per sample: rows of probabilities (floats, 2-D, each
row summing to 1) give the confidence (the largest probability), the entropy and the predicted
class; integers or strings give label rates; other floats give a value distribution (a regressor).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from plugins.monitor.stats import entropy

# Upper bounds of the confidence histogram: fine near 1, where a confident classifier lives and where
# a drop first shows, coarse below (a binary classifier's confidence is never under 0.5).
CONFIDENCE_BUCKETS: Final = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
# Upper bounds of the token-length histograms: powers of two from one short sentence to a long context.
TOKEN_BUCKETS: Final = (16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0)
# Distinct labels kept per output; more go under "other", so a free-text output cannot grow memory.
MAX_LABELS: Final = 100
# How far a row's probabilities may sum from 1 and still be read as probabilities (float32 rounding).
_SUM_TOLERANCE: Final = 1e-3


class Histogram:
    """Cumulative-bucket counts in Prometheus' shape: counts per upper bound, then +Inf; and the sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.counts = np.zeros(len(bounds) + 1, dtype=np.int64)
        self.total = 0.0

    def observe(self, values: np.ndarray) -> None:
        self.counts += np.bincount(
            np.searchsorted(self.bounds, values, side="left"), minlength=len(self.counts)
        )
        self.total += float(values.sum())

    def add(self, other: Histogram) -> None:
        self.counts += other.counts
        self.total += other.total

    @property
    def count(self) -> int:
        return int(self.counts.sum())

    def buckets(self) -> list[tuple[str, int]]:
        """(upper bound, cumulative count) pairs ending with +Inf."""
        cumulative = np.cumsum(self.counts)
        labels = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        return [(label, int(count)) for label, count in zip(labels, cumulative, strict=True)]


class OutputStats:
    """One output of one model series."""

    __slots__ = ("classes", "confidence", "entropy_sum", "kind", "labels", "rows", "value_stats")

    def __init__(self) -> None:
        self.kind = ""
        self.rows = 0
        self.confidence = Histogram(CONFIDENCE_BUCKETS)
        self.entropy_sum = 0.0
        self.classes: dict[str, int] = {}
        self.labels: dict[str, int] = {}
        self.value_stats = np.array([0.0, 0.0, np.inf, -np.inf])  # sum, sum of squares, min, max

    def observe(self, data: np.ndarray) -> None:
        kind = _kind_of(data)
        self.kind = self.kind or kind
        if kind != self.kind:
            return  # an output that changes type mid-stream is not mixed into the first one's summary
        if kind == "probabilities":
            rows = data.reshape(data.shape[0], -1).astype(np.float64)
            self.rows += rows.shape[0]
            self.confidence.observe(rows.max(axis=1))
            self.entropy_sum += float(entropy(rows).sum())
            _tally(self.classes, rows.argmax(axis=1))
        elif kind == "labels":
            flat = data.reshape(-1)
            self.rows += flat.shape[0]
            _tally(self.labels, flat)
        else:
            values = data.reshape(-1).astype(np.float64)
            values = values[np.isfinite(values)]
            self.rows += values.shape[0]
            if values.size:
                stats = self.value_stats
                stats[0] += values.sum()
                stats[1] += float(np.square(values).sum())
                stats[2] = min(stats[2], values.min())
                stats[3] = max(stats[3], values.max())

    def add(self, other: OutputStats) -> None:
        """Fold another series' counts of the same output into these (for reports over series)."""
        self.kind = self.kind or other.kind
        if other.kind != self.kind:
            return
        self.rows += other.rows
        self.confidence.add(other.confidence)
        self.entropy_sum += other.entropy_sum
        for table, more in ((self.classes, other.classes), (self.labels, other.labels)):
            for key, count in more.items():
                table[key] = table.get(key, 0) + count
        mine, theirs = self.value_stats, other.value_stats
        mine[:2] += theirs[:2]
        mine[2], mine[3] = min(mine[2], theirs[2]), max(mine[3], theirs[3])

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "rows": self.rows}
        if self.kind == "probabilities" and self.rows:
            out["confidence_mean"] = self.confidence.total / self.rows
            out["entropy_mean"] = self.entropy_sum / self.rows
            out["class_rates"] = {name: count / self.rows for name, count in sorted(self.classes.items())}
            out["confidence_buckets"] = dict(self.confidence.buckets())
        elif self.kind == "labels" and self.rows:
            out["label_rates"] = {name: count / self.rows for name, count in sorted(self.labels.items())}
        elif self.kind == "values" and self.rows:
            total, squares, low, high = (float(x) for x in self.value_stats)
            mean = total / self.rows
            out.update(mean=mean, std=max(squares / self.rows - mean * mean, 0.0) ** 0.5, min=low, max=high)
        return out


class LlmStats:
    """Token lengths and finish reasons of a model's OpenAI-style answers."""

    __slots__ = ("completion_tokens", "finish_reasons", "prompt_tokens")

    def __init__(self) -> None:
        self.prompt_tokens = Histogram(TOKEN_BUCKETS)
        self.completion_tokens = Histogram(TOKEN_BUCKETS)
        self.finish_reasons: dict[str, int] = {}

    def observe(self, prompt: int | None, completion: int | None, reasons: list[str]) -> None:
        if prompt is not None:
            self.prompt_tokens.observe(np.array([prompt], dtype=np.float64))
        if completion is not None:
            self.completion_tokens.observe(np.array([completion], dtype=np.float64))
        _tally(self.finish_reasons, np.asarray(reasons, dtype=object))

    def add(self, other: LlmStats) -> None:
        self.prompt_tokens.add(other.prompt_tokens)
        self.completion_tokens.add(other.completion_tokens)
        for key, count in other.finish_reasons.items():
            self.finish_reasons[key] = self.finish_reasons.get(key, 0) + count

    def summary(self) -> dict[str, Any]:
        def mean(histogram: Histogram) -> float | None:
            return histogram.total / histogram.count if histogram.count else None

        return {
            "kind": "llm",
            "answers": self.prompt_tokens.count,
            "prompt_tokens_mean": mean(self.prompt_tokens),
            "completion_tokens_mean": mean(self.completion_tokens),
            "finish_reasons": dict(sorted(self.finish_reasons.items())),
        }


def _kind_of(data: np.ndarray) -> str:
    if data.dtype.kind in "biuSUO":
        return "labels"
    if data.ndim == 2 and data.shape[1] > 1 and data.shape[0] > 0:
        sums = data.astype(np.float64).sum(axis=1)
        if np.all(np.abs(sums - 1.0) <= _SUM_TOLERANCE) and np.all(data >= 0):
            return "probabilities"
    return "values"


def _tally(table: dict[str, int], values: np.ndarray) -> None:
    keys, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
    for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
        name = key if key in table or len(table) < MAX_LABELS else "other"
        table[name] = table.get(name, 0) + count
