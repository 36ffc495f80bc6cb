"""An experiment's raw events, read from the store and held as arrays per arm.

The store's sufficient statistics answer "where are we now"; the looks over time, quantiles over
units, CUPED, segments and the report's time series need to know when each event happened and to
which unit, so they read the raw rows (`EventStore.export_rows`). `experiments.event_reader` turns
rows into these arrays (`load_events`); `experiments.event_cache` keeps a reader between requests.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class FeedbackEvents:
    time: FloatArray
    unit: IntArray
    value: FloatArray


@dataclass(frozen=True, slots=True)
class ArmEvents:
    """One arm's analysed events in the current phase; `unit` codes number this arm's units from 0."""

    exposure_time: FloatArray
    exposure_unit: IntArray
    outcome_time: FloatArray
    outcome_unit: IntArray
    latency: FloatArray
    error: FloatArray
    feedback: Mapping[str, FeedbackEvents]
    pre_period: Mapping[str, FloatArray] = field(default_factory=dict)
    """Per metric, each unit's value in the experiment's earlier phases (NaN where it has none): the
    pre-period covariate of CUPED. error_rate and latency per request, feedback:X summed per unit."""
    unit_segments: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per segment dimension, each unit's value (by unit code) at its first exposure in the phase;
    "" for a unit with none recorded."""

    @property
    def unit_count(self) -> int:
        codes = [self.exposure_unit, self.outcome_unit, *(f.unit for f in self.feedback.values())]
        return max((int(c.max()) + 1 for c in codes if c.size), default=0)

    def unit_first_seen(self) -> FloatArray:
        """Per unit, the time of its first event of any kind (exposure, outcome, feedback)."""
        first = np.full(self.unit_count, math.inf)
        np.minimum.at(first, self.exposure_unit, self.exposure_time)
        np.minimum.at(first, self.outcome_unit, self.outcome_time)
        for events in self.feedback.values():
            np.minimum.at(first, events.unit, events.time)
        return first

    def times(self) -> FloatArray:
        parts = [self.exposure_time, self.outcome_time, *(f.time for f in self.feedback.values())]
        return np.concatenate(parts) if parts else np.empty(0)


@dataclass(frozen=True, slots=True)
class PhaseExposures:
    """Analysed exposures of every arm in one phase: sorted times and distinct units."""

    times: Mapping[str, FloatArray]
    unit_first_times: Mapping[str, FloatArray]
    """Per arm, the sorted times at which each unit was first exposed in this phase."""


@dataclass(frozen=True, slots=True)
class ExperimentEvents:
    phase: int
    arms: Mapping[str, ArmEvents]
    """The current phase, per arm."""
    exposures: Mapping[int, PhaseExposures]
    """Every phase that has analysed exposures."""
    unusable_feedback: int = 0
    """Feedback rows of this experiment left out: their value is missing, not finite or too large."""

    def window(self) -> tuple[float, float]:
        """First and last analysed event of the current phase (NaN, NaN when there is none)."""
        times = [arm.times() for arm in self.arms.values()]
        merged = np.concatenate(times) if times else np.empty(0)
        if merged.size == 0:
            return math.nan, math.nan
        return float(merged.min()), float(merged.max())
