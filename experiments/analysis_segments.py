"""Segment breakdowns: each goal's effect within the segments of a recorded dimension.

An experiment that lists `segments:` records one value per dimension on every exposure
(`experiments.segments`); a unit belongs to the segment of its first exposure in the phase. Per goal
metric and dimension, each segment is compared with the delta method over its units (the same ratio
of per-unit totals as the whole comparison, `experiments.stats.ratio_difference`), fixed-horizon.

Many segments make many tests, so:
- the small-segment rule: a segment with fewer than `MIN_SEGMENT_UNITS` units in either arm is shown
  with its counts but not tested (the normal approximation needs a sample; it is also the sequential
  tests' burn-in);
- a dimension keeps its `MAX_SEGMENTS` largest segments and pools the rest as "(other)";
- Holm's step-down across every tested segment of every dimension of one metric, so the chance that
  any segment of an A/A test shows an effect stays at most alpha (family-wise);
- Cochran's Q per dimension (`experiments.stats.heterogeneity`) asks whether the effect differs
  between segments at all: a cheap test that looks at all segments together.
Segment rows are descriptive: the verdict is taken on the whole population.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from experiments.analysis_events import ArmEvents, FloatArray
from experiments.analysis_history import history_metric, metric_events
from experiments.stats import RatioSummary, holm, ratio_difference
from experiments.stats.heterogeneity import cochran_q
from experiments.status import SegmentEffect, SegmentHeterogeneity

# Units per arm below which a segment is not tested: the burn-in of the sequential tests, where the
# delta method's normal approximation is trusted.
MIN_SEGMENT_UNITS = 100
# Segments kept per dimension (largest first); a header with many values would otherwise make a
# table no one reads and a Holm family so large that nothing could be found.
MAX_SEGMENTS = 20
NONE_LABEL = "(none)"
OTHER_LABEL = "(other)"


@dataclass(frozen=True, slots=True)
class UnitValues:
    """Per-unit numerator and denominator totals of a metric, and each unit's segment label."""

    numerator: FloatArray
    denominator: FloatArray
    segment: npt.NDArray[np.object_]


def unit_totals(arm: ArmEvents, metric: str) -> tuple[FloatArray, FloatArray]:
    """Every unit's total of the metric's numerator and denominator in the phase (by unit code)."""
    size = arm.unit_count
    events = metric_events(arm, metric)
    numerator = np.bincount(events.unit, weights=events.numerator, minlength=size).astype(np.float64)
    if events.denominator is None:
        return numerator, np.ones(size)
    denominator = np.bincount(events.unit, weights=events.denominator, minlength=size).astype(np.float64)
    return numerator, denominator


@dataclass(frozen=True, slots=True)
class SegmentRow:
    """One segment's comparison before adjustment; NaN numbers when it is not tested."""

    segment: str
    control_units: int
    treatment_units: int
    control_value: float = math.nan
    treatment_value: float = math.nan
    difference: float = math.nan
    standard_error: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_value: float = math.nan

    @property
    def tested(self) -> bool:
        return math.isfinite(self.p_value)


def compare_segments(
    control: UnitValues, treatment: UnitValues, segments: Sequence[str], *, alpha: float
) -> list[SegmentRow]:
    """Each segment compared over its units; untested below the small-segment rule."""
    rows = []
    for segment in segments:
        in_c, in_t = control.segment == segment, treatment.segment == segment
        n_c, n_t = int(in_c.sum()), int(in_t.sum())
        if min(n_c, n_t) < max(MIN_SEGMENT_UNITS, 2):
            rows.append(SegmentRow(segment, n_c, n_t))
            continue
        summary_c = RatioSummary.from_units(control.numerator[in_c], control.denominator[in_c])
        summary_t = RatioSummary.from_units(treatment.numerator[in_t], treatment.denominator[in_t])
        if float(summary_c.mean_denominator) <= 0.0 or float(summary_t.mean_denominator) <= 0.0:
            rows.append(SegmentRow(segment, n_c, n_t))
            continue
        found = ratio_difference(summary_c, summary_t, alpha=alpha)
        rows.append(
            SegmentRow(
                segment,
                n_c,
                n_t,
                float(summary_c.ratio),
                float(summary_t.ratio),
                float(found.estimate),
                float(found.standard_error),
                float(found.ci_low),
                float(found.ci_high),
                float(found.p_value),
            )
        )
    return rows


def _labels(values: tuple[str, ...], size: int) -> npt.NDArray[np.object_]:
    """Each unit's segment label (units with no recorded value: "(none)")."""
    padded = [value or NONE_LABEL for value in values] + [NONE_LABEL] * (size - len(values))
    return np.array(padded, dtype=object)


def _kept(control: npt.NDArray[np.object_], treatment: npt.NDArray[np.object_]) -> list[str]:
    """The dimension's segments, largest first, at most `MAX_SEGMENTS` (the rest become "(other)")."""
    counts = Counter(control.tolist()) + Counter(treatment.tolist())
    ordered = [str(segment) for segment, _ in counts.most_common()]
    return ordered if len(ordered) <= MAX_SEGMENTS else ordered[: MAX_SEGMENTS - 1]


def segment_breakdown(
    control: ArmEvents, treatment: ArmEvents, metric: str, dimensions: Sequence[str], alpha: float
) -> tuple[tuple[SegmentEffect, ...], tuple[SegmentHeterogeneity, ...]]:
    """Every dimension's segment effects of one metric, Holm-adjusted together, and Cochran's Q."""
    if not dimensions or not history_metric(metric):
        return (), ()
    m_c, d_c = unit_totals(control, metric)
    m_t, d_t = unit_totals(treatment, metric)
    cells: list[tuple[str, SegmentRow]] = []
    heterogeneity = []
    for dimension in dimensions:
        seg_c = _labels(control.unit_segments.get(dimension, ()), m_c.size)
        seg_t = _labels(treatment.unit_segments.get(dimension, ()), m_t.size)
        kept = _kept(seg_c, seg_t)
        if len(kept) < len(set(seg_c.tolist()) | set(seg_t.tolist())):
            seg_c = np.where(np.isin(seg_c, kept), seg_c, OTHER_LABEL)
            seg_t = np.where(np.isin(seg_t, kept), seg_t, OTHER_LABEL)
            kept = [*kept, OTHER_LABEL]
        rows = compare_segments(UnitValues(m_c, d_c, seg_c), UnitValues(m_t, d_t, seg_t), kept, alpha=alpha)
        cells += [(dimension, row) for row in rows]
        tested = [row for row in rows if row.tested]
        q = cochran_q([row.difference for row in tested], [row.standard_error for row in tested])
        if q is not None:
            heterogeneity.append(SegmentHeterogeneity(dimension, q.q, q.degrees_of_freedom, q.p_value))
    tested_index = [i for i, (_, row) in enumerate(cells) if row.tested]
    adjusted: dict[int, float] = {}
    if tested_index:
        p_values = holm(np.array([cells[i][1].p_value for i in tested_index]))
        adjusted = {i: float(p) for i, p in zip(tested_index, p_values, strict=True)}
    effects = []
    for i, (dimension, row) in enumerate(cells):
        p_adjusted = adjusted.get(i, math.nan)
        effects.append(
            SegmentEffect(
                dimension=dimension,
                segment=row.segment,
                control_units=row.control_units,
                treatment_units=row.treatment_units,
                control_value=row.control_value,
                treatment_value=row.treatment_value,
                difference=row.difference,
                ci_low=row.ci_low,
                ci_high=row.ci_high,
                p_value=row.p_value,
                p_value_adjusted=p_adjusted,
                significant=i in adjusted and p_adjusted <= alpha,
                tested=i in adjusted,
            )
        )
    return tuple(effects), tuple(heterogeneity)
