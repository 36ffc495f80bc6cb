"""Comparing a mirror's answer with the primary's answer to the same request.

Per mirror: requests compared, and how many disagreed; for classifier outputs (a label output, byte
strings, or the argmax of probabilities) the share of rows whose predicted class matches; for numeric
outputs the largest and mean absolute difference, the largest relative difference, and the share of
answers equal within the tolerance (|a - b| <= tol + tol * |b|, numpy's allclose); the latency
difference (mirror - primary); and the mirror's error rate. An answer disagrees when its status
differs from the primary's, the mirror failed, a classifier output predicts another class, or a
numeric output without classes falls outside the tolerance. Primary errors are not compared (there
is no correct answer to compare with) and are counted apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.events import SERVER_ERROR_STATUS
from experiments.guardrails import ShadowTally
from experiments.outputs import summarize_tensor
from experiments.stats import RunningMoments
from gateway.core.errors import BadRequest
from gateway.core.protocols.oip_v2 import Tensor, decode_response

# Relative differences divide by max(|primary|, this): a primary value of exactly 0 must not turn a
# 1e-12 difference into an infinite relative one.
_RELATIVE_FLOOR = 1e-12


@dataclass(slots=True)
class MirrorTally:
    compared: int = 0
    disagreements: int = 0
    status_mismatches: int = 0
    mirror_errors: int = 0
    primary_errors: int = 0
    dropped: int = 0
    rows_compared: int = 0
    rows_agreed: int = 0
    numeric_compared: int = 0
    numeric_within: int = 0
    max_abs_diff: float = 0.0
    max_rel_diff: float = 0.0
    abs_diff: RunningMoments = field(default_factory=RunningMoments)
    latency_diff: RunningMoments = field(default_factory=RunningMoments)

    def snapshot(self) -> dict[str, Any]:
        def rate(part: int, whole: int) -> float | None:
            return part / whole if whole else None

        attempts = self.compared + self.primary_errors
        return {
            "compared": self.compared,
            "disagreements": self.disagreements,
            "disagreement_rate": rate(self.disagreements, self.compared),
            "status_mismatches": self.status_mismatches,
            "mirror_errors": self.mirror_errors,
            "mirror_error_rate": rate(self.mirror_errors, attempts),
            "primary_errors": self.primary_errors,
            "dropped": self.dropped,
            "classifier": {
                "rows": self.rows_compared,
                "agreement_rate": rate(self.rows_agreed, self.rows_compared),
            },
            "numeric": {
                "compared": self.numeric_compared,
                "within_tolerance_rate": rate(self.numeric_within, self.numeric_compared),
                "max_abs_diff": self.max_abs_diff,
                "mean_abs_diff": self.abs_diff.mean if self.abs_diff.count else None,
                "max_rel_diff": self.max_rel_diff,
            },
            "latency": {
                "mean_difference_s": self.latency_diff.mean if self.latency_diff.count else None,
                "samples": self.latency_diff.count,
            },
        }


def _decode(body: bytes) -> dict[str, Tensor] | None:
    try:
        return {tensor.name: tensor for tensor in decode_response(body).outputs}
    except (BadRequest, ValueError):
        return None


class ShadowComparison:
    """Running comparison of every mirror of one shadow experiment against its primary."""

    def __init__(self, experiment: str, *, tolerance: float, outputs: Sequence[str] | None = None) -> None:
        self.experiment = experiment
        self._tolerance = tolerance
        self._outputs = tuple(outputs) if outputs else None
        self._mirrors: dict[str, MirrorTally] = {}

    def _tally(self, mirror: str) -> MirrorTally:
        tally = self._mirrors.get(mirror)
        if tally is None:
            tally = self._mirrors[mirror] = MirrorTally()
        return tally

    def record_drop(self, mirror: str) -> None:
        self._tally(mirror).dropped += 1

    def record_failure(self, mirror: str, primary_status: int) -> None:
        """The mirror request failed in transport (no answer at all)."""
        self.record(mirror, primary_status, b"", 0.0, 0, b"", None)

    def record(
        self,
        mirror: str,
        primary_status: int,
        primary_body: bytes,
        primary_latency: float,
        mirror_status: int,
        mirror_body: bytes,
        mirror_latency: float | None,
    ) -> bool:
        """Compare one pair of answers; True when they agree (a primary error compares nothing)."""
        tally = self._tally(mirror)
        if primary_status >= SERVER_ERROR_STATUS or primary_status == 0:
            tally.primary_errors += 1
            return True
        tally.compared += 1
        if mirror_latency is not None:
            tally.latency_diff = tally.latency_diff.add(mirror_latency - primary_latency)
        agree = True
        if mirror_status >= SERVER_ERROR_STATUS or mirror_status == 0:
            tally.mirror_errors += 1
            agree = False
        elif mirror_status != primary_status:
            tally.status_mismatches += 1
            agree = False
        elif 200 <= primary_status < 300:
            agree = self._compare_bodies(tally, primary_body, mirror_body)
        if not agree:
            tally.disagreements += 1
        return agree

    def _compare_bodies(self, tally: MirrorTally, primary_body: bytes, mirror_body: bytes) -> bool:
        primary, mirror = _decode(primary_body), _decode(mirror_body)
        if primary is None or mirror is None:
            return primary_body == mirror_body
        names = self._outputs or tuple(name for name in primary if name in mirror)
        agree = bool(names)
        for name in names:
            if name not in primary or name not in mirror:
                agree = False
                continue
            agree = self._compare_output(tally, primary[name], mirror[name]) and agree
        return agree

    def _compare_output(self, tally: MirrorTally, primary: Tensor, mirror: Tensor) -> bool:
        p_summary, m_summary = summarize_tensor(primary), summarize_tensor(mirror)
        agree: bool | None = None
        if p_summary is not None and m_summary is not None and p_summary.labels and m_summary.labels:
            rows = min(len(p_summary.labels), len(m_summary.labels))
            matches = sum(a == b for a, b in zip(p_summary.labels, m_summary.labels, strict=False))
            tally.rows_compared += max(len(p_summary.labels), len(m_summary.labels))
            tally.rows_agreed += matches
            agree = matches == rows and len(p_summary.labels) == len(m_summary.labels)
        numeric_agree = self._compare_numbers(tally, primary.data, mirror.data)
        if agree is None:
            return (
                numeric_agree
                if numeric_agree is not None
                else bool(np.array_equal(primary.data, mirror.data))
            )
        return agree

    def _compare_numbers(self, tally: MirrorTally, primary: np.ndarray, mirror: np.ndarray) -> bool | None:
        """Numeric differences; None when the outputs are not both numeric."""
        if primary.dtype.kind not in "iufb" or mirror.dtype.kind not in "iufb":
            return None
        tally.numeric_compared += 1
        if primary.shape != mirror.shape:
            return False
        a, b = primary.astype(np.float64), mirror.astype(np.float64)
        difference = np.abs(b - a)
        if difference.size:
            tally.max_abs_diff = max(tally.max_abs_diff, float(difference.max()))
            relative = difference / np.maximum(np.abs(a), _RELATIVE_FLOOR)
            tally.max_rel_diff = max(tally.max_rel_diff, float(relative.max()))
            tally.abs_diff = tally.abs_diff.add(float(difference.mean()))
        within = bool(np.allclose(b, a, rtol=self._tolerance, atol=self._tolerance))
        tally.numeric_within += int(within)
        return within

    def snapshot(self) -> dict[str, Any]:
        """Per mirror comparison figures, for the admin API and reports."""
        return {
            "experiment": self.experiment,
            "tolerance": self._tolerance,
            "mirrors": {name: tally.snapshot() for name, tally in sorted(self._mirrors.items())},
        }

    def tally(self, mirror: str | None = None) -> ShadowTally:
        """Compared answers and disagreements (of one mirror, or all): the shadow guardrail's input."""
        if mirror is None:
            tallies = list(self._mirrors.values())
        else:
            tallies = [self._mirrors[mirror]] if mirror in self._mirrors else []
        return ShadowTally(sum(t.compared for t in tallies), sum(t.disagreements for t in tallies))
