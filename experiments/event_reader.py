"""Raw event rows into `experiments.analysis_events.ExperimentEvents`: the reader and `load_events`.

Only analysed events count (not forced, not excluded, with a unit id), as in the statistics.
Feedback is attributed as the store joined it: by exposure id to that exposure (rows of older
versions have only the request id), else by unit id to the unit's latest exposure. Feedback values
that are not finite or beyond `experiments.finite.MAX_MAGNITUDE` (possible only in rows an older
version wrote) are left out and counted. The reader is fed rows in order, all at once
(`load_events`) or as they are stored (`experiments.event_cache`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from experiments.analysis_events import (
    ArmEvents,
    ExperimentEvents,
    FeedbackEvents,
    FloatArray,
    PhaseExposures,
)
from experiments.finite import finite, usable_value
from experiments.store.base import EventStore
from experiments.store.rows import segments_of


@dataclass(slots=True)
class _Rows:
    """Rows of `width` numbers, appended one by one and handed out as one array; rows already handed
    out are kept as an array, so a build converts only the rows added since the last one."""

    width: int
    pending: list[tuple[float, ...]] = field(default_factory=list)
    done: FloatArray | None = None

    def append(self, row: tuple[float, ...]) -> None:
        self.pending.append(row)

    def array(self) -> FloatArray:
        if self.pending or self.done is None:
            new = np.array(self.pending, dtype=np.float64).reshape(-1, self.width)
            self.done = new if self.done is None else np.concatenate([self.done, new])
            self.pending.clear()
        return self.done


@dataclass(slots=True)
class _ArmBuilder:
    codes: dict[str, int] = field(default_factory=dict)
    exposures: _Rows = field(default_factory=lambda: _Rows(2))
    outcomes: _Rows = field(default_factory=lambda: _Rows(4))
    feedback: dict[str, _Rows] = field(default_factory=dict)
    segments: dict[str, dict[int, str]] = field(default_factory=dict)

    def code(self, unit: str) -> int:
        return self.codes.setdefault(unit, len(self.codes))

    def add_segments(self, code: int, values: Mapping[str, str]) -> None:
        for dimension, value in values.items():
            self.segments.setdefault(dimension, {}).setdefault(code, value)

    def unit_segments(self) -> dict[str, tuple[str, ...]]:
        size = len(self.codes)
        return {
            dimension: tuple(by_code.get(code, "") for code in range(size))
            for dimension, by_code in self.segments.items()
        }

    def build(self, pre: _PrePeriod) -> ArmEvents:
        exposures, outcomes = self.exposures.array(), self.outcomes.array()
        feedback = {}
        for metric, rows in self.feedback.items():
            values = rows.array()
            feedback[metric] = FeedbackEvents(values[:, 0], values[:, 1].astype(np.int64), values[:, 2])
        return ArmEvents(
            exposure_time=exposures[:, 0],
            exposure_unit=exposures[:, 1].astype(np.int64),
            outcome_time=outcomes[:, 0],
            outcome_unit=outcomes[:, 1].astype(np.int64),
            latency=outcomes[:, 2],
            error=outcomes[:, 3],
            feedback=feedback,
            pre_period=pre.per_unit(self.codes),
            unit_segments=self.unit_segments(),
        )


@dataclass(slots=True)
class _PrePeriod:
    """Totals per unit id from the phases before the analysed one."""

    outcomes: dict[str, list[float]] = field(default_factory=dict)
    """unit -> [latency sum, errors, requests]"""
    feedback: dict[str, dict[str, float]] = field(default_factory=dict)
    """metric -> unit -> sum"""

    def add_outcome(self, unit: str, latency: float, error: float) -> None:
        totals = self.outcomes.setdefault(unit, [0.0, 0.0, 0.0])
        totals[0] += latency
        totals[1] += error
        totals[2] += 1.0

    def per_unit(self, codes: Mapping[str, int]) -> dict[str, FloatArray]:
        if not self.outcomes and not self.feedback:
            return {}
        found: dict[str, FloatArray] = {}
        size = len(codes)
        if self.outcomes:
            latency, errors = np.full(size, math.nan), np.full(size, math.nan)
            for unit, code in codes.items():
                if (totals := self.outcomes.get(unit)) is not None:
                    latency[code], errors[code] = totals[0] / totals[2], totals[1] / totals[2]
            found["latency"], found["error_rate"] = latency, errors
        for metric, sums in self.feedback.items():
            # A unit seen before with no feedback of this metric had 0 of it, as in the analysis.
            # `codes` numbers units in insertion order, so this list is in code order.
            found[metric] = np.array(
                [
                    sums.get(unit, 0.0) if unit in self.outcomes else sums.get(unit, math.nan)
                    for unit in codes
                ],
                dtype=np.float64,
            )
        return found


def _analysed(row: Mapping[str, Any]) -> bool:
    return not (row.get("forced") or row.get("excluded")) and bool(row.get("unit_id"))


@dataclass(slots=True)
class _PhaseTimes:
    """Analysed exposure times and each unit's first exposure, per phase and arm."""

    times: dict[int, dict[str, _Rows]] = field(default_factory=dict)
    first_seen: dict[int, dict[str, dict[str, float]]] = field(default_factory=dict)

    def add(self, phase: int, arm: str, unit: str, time: float) -> None:
        self.times.setdefault(phase, {}).setdefault(arm, _Rows(1)).append((time,))
        seen = self.first_seen.setdefault(phase, {}).setdefault(arm, {})
        seen[unit] = min(seen.get(unit, math.inf), time)

    def build(self) -> dict[int, PhaseExposures]:
        return {
            phase: PhaseExposures(
                times={arm: np.sort(rows.array()[:, 0]) for arm, rows in arms.items()},
                unit_first_times={
                    arm: np.sort(np.fromiter(units.values(), dtype=np.float64, count=len(units)))
                    for arm, units in self.first_seen[phase].items()
                },
            )
            for phase, arms in self.times.items()
        }


Target = tuple[int, str, str | None, bool]
"""Where feedback joins: (phase, arm, unit id, analysed)."""


class EventReader:
    """Builds an experiment's `ExperimentEvents` for one phase from its raw rows, fed oldest first:
    all at once (`load_events`), or batch by batch as they are stored (`experiments.event_cache`),
    which costs only the new rows' conversion and a copy of arrays per build.

    Each `add` takes a batch's exposures before its outcomes and feedback, as the store applied
    them. Feedback joined by unit id goes to the unit's latest exposure read so far: the one the
    store joined it to when it was written."""

    def __init__(self, experiment: str, phase: int) -> None:
        self.experiment = experiment
        self.phase = phase
        self._arms: dict[str, _ArmBuilder] = {}
        self._by_exposure: dict[str, Target] = {}
        self._latest_of_unit: dict[str, tuple[int, str, bool]] = {}
        self._pre = _PrePeriod()
        self._phase_times = _PhaseTimes()
        self._unusable = 0

    def add(
        self,
        exposure_rows: Iterable[Mapping[str, Any]],
        outcome_rows: Iterable[Mapping[str, Any]],
        feedback_rows: Iterable[Mapping[str, Any]],
    ) -> None:
        for row in exposure_rows:
            self._exposure(row)
        for row in outcome_rows:
            self._outcome(row)
        for row in feedback_rows:
            self._feedback(row)

    def _arm(self, arm: str) -> _ArmBuilder:
        builder = self._arms.get(arm)
        if builder is None:  # not setdefault: a builder is made once per arm, not once per row
            builder = self._arms[arm] = _ArmBuilder()
        return builder

    def _exposure(self, row: Mapping[str, Any]) -> None:
        analysed, arm, row_phase, unit = _analysed(row), str(row["arm"]), int(row["phase"]), row["unit_id"]
        if exposure_key := _exposure_key(row):
            self._by_exposure[exposure_key] = (row_phase, arm, unit, analysed)
        if unit:
            self._latest_of_unit[str(unit)] = (row_phase, arm, analysed)
        if not analysed:
            return
        self._phase_times.add(row_phase, arm, str(unit), float(row["time"]))
        if row_phase == self.phase:
            builder = self._arm(arm)
            code = builder.code(str(unit))
            builder.exposures.append((float(row["time"]), code))
            if segments := segments_of(row):
                builder.add_segments(code, segments)

    def _outcome(self, row: Mapping[str, Any]) -> None:
        if not _analysed(row):
            return
        row_phase, error = int(row["phase"]), 1.0 if row.get("error") else 0.0
        if row_phase < self.phase:
            self._pre.add_outcome(str(row["unit_id"]), float(row["latency_s"]), error)
        elif row_phase == self.phase:
            builder = self._arm(str(row["arm"]))
            code = builder.code(str(row["unit_id"]))
            builder.outcomes.append((float(row["time"]), code, float(row["latency_s"]), error))

    def _feedback(self, row: Mapping[str, Any]) -> None:
        if not row.get("matched") or row.get("experiment") != self.experiment:
            return
        value = finite(row.get("value"))
        if not usable_value(value):
            self._unusable += 1
            return
        target: Target | None = None
        if exposure_key := _exposure_key(row):
            target = self._by_exposure.get(exposure_key)
        elif row.get("unit_id") and (latest := self._latest_of_unit.get(str(row["unit_id"]))) is not None:
            target = (latest[0], latest[1], str(row["unit_id"]), latest[2])
        if target is None or not target[3] or not target[2]:
            return
        metric = f"feedback:{row['metric']}"
        if target[0] < self.phase:
            sums = self._pre.feedback.setdefault(metric, {})
            sums[target[2]] = sums.get(target[2], 0.0) + value
        elif target[0] == self.phase:
            builder = self._arm(target[1])
            rows = builder.feedback.setdefault(metric, _Rows(3))
            rows.append((float(row["time"]), builder.code(target[2]), value))

    def build(self) -> ExperimentEvents:
        return ExperimentEvents(
            phase=self.phase,
            arms={arm: builder.build(self._pre) for arm, builder in self._arms.items()},
            exposures=self._phase_times.build(),
            unusable_feedback=self._unusable,
        )


async def load_events(store: EventStore, experiment: str, phase: int) -> ExperimentEvents:
    """Read the experiment's raw exposures, outcomes and feedback (oldest first) into arrays."""
    reader = EventReader(experiment, phase)
    reader.add(
        await store.export_rows(experiment, "exposures"),
        await store.export_rows(experiment, "outcomes"),
        await store.export_rows(experiment, "feedback"),
    )
    return reader.build()


def _exposure_key(row: Mapping[str, Any]) -> str | None:
    """The id feedback joins an exposure by: its exposure id, or (rows of older versions) request id."""
    key = row.get("exposure_id") or row.get("request_id")
    return str(key) if key else None
