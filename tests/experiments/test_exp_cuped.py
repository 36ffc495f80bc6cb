"""CUPED in the analysis: each unit's value in the experiment's earlier phases is its covariate."""

from __future__ import annotations

import math

import numpy as np
import orjson

from experiments.analysis import AnalysisSettings, analyze
from experiments.event_reader import load_events
from experiments.events import Exposure, Outcome
from experiments.store.sqlite import SqliteEventStore

UNITS = 600
SHARES = {"control": 0.5, "treatment": 0.5}


async def _two_phases(store: SqliteEventStore) -> None:
    """Each unit has its own speed (a lognormal factor) in both phases; two requests per phase."""
    rng = np.random.default_rng(31)
    speed = rng.lognormal(0.0, 0.6, UNITS)
    events: list[Exposure | Outcome] = []
    for phase in (0, 1):
        for u in range(UNITS):
            arm = "control" if u % 2 else "treatment"
            for r in range(2):
                rid, at = f"{phase}-{u}-{r}", 1000.0 * (phase + 1) + u
                seconds = float(0.05 * speed[u] * rng.lognormal(0.0, 0.2))
                events.append(Exposure("exp", arm, f"u{u}", rid, at, phase=phase))
                events.append(Outcome(rid, "exp", arm, f"u{u}", at, seconds, 200, False, phase=phase))
    await store.write(events)


async def test_a_later_phase_is_adjusted_by_the_units_earlier_values(sqlite_store: SqliteEventStore) -> None:
    await _two_phases(sqlite_store)
    statuses = []
    for phase in (0, 1):
        data = await sqlite_store.phase_data("exp", phase)
        events = await load_events(sqlite_store, "exp", phase)
        status = analyze(
            "exp", "ab", data, shares=SHARES, metrics=["latency"], settings=AnalysisSettings(),
            generated_at=0.0, events=events,
        )  # fmt: skip
        statuses.append(status)
    first, second = (status.comparison("latency") for status in statuses)
    assert first is not None and first.cuped is None  # no pre-period in the first phase
    assert second is not None and second.cuped is not None
    # The unit's speed carries over: most of the variance between units is explained.
    assert second.cuped.variance_reduction > 0.5
    assert second.cuped.ci_low < 0.0 < second.cuped.ci_high  # no effect in either phase
    unadjusted = second.ci_high - second.ci_low
    assert second.cuped.ci_high - second.cuped.ci_low < math.sqrt(0.5) * unadjusted
    document = orjson.loads(statuses[1].to_json())
    latency = next(c for c in document["comparisons"] if c["metric"] == "latency")
    assert latency["cuped"]["variance_reduction"] > 0.5
