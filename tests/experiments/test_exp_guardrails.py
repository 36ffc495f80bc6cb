"""Guardrail tests on stored statistics: each bound's direction, the shadow rate, running minimum."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.config import GuardrailConfig
from experiments.events import Exposure, Feedback, Outcome
from experiments.guardrails import ShadowTally, evaluate_guardrail, guardrail_key
from experiments.store.base import PhaseData
from experiments.store.sqlite import SqliteEventStore


async def phase(
    store: SqliteEventStore,
    *,
    errors: dict[str, float],
    latency: dict[str, float],
    conversion: dict[str, float],
) -> PhaseData:
    rng = np.random.default_rng(8)
    events: list[Exposure | Outcome | Feedback] = []
    for u in range(800):
        arm = "baseline" if u % 2 else "candidate"
        for r in range(3):
            rid = f"{u}-{r}"
            failed = bool(rng.random() < errors[arm])
            events.append(Exposure("c", arm, f"u{u}", rid, 1.0))
            seconds = float(rng.lognormal(np.log(latency[arm]), 0.2))
            events.append(Outcome(rid, "c", arm, f"u{u}", 1.0, seconds, 500 if failed else 200, failed))
        if rng.random() < conversion[arm]:
            events.append(Feedback("conversion", 1.0, 1.0, unit_id=f"u{u}"))
    await store.write(events)
    return await store.phase_data("c", 0)


def evaluate(raw: dict[str, object], data: PhaseData, **extra: object) -> object:
    return evaluate_guardrail(
        GuardrailConfig.model_validate(raw), data, baseline_arm="baseline", candidate_arm="candidate",
        alpha=0.05, n_star=1600, burn_in=100, **extra,  # type: ignore[arg-type]
    )  # fmt: skip


async def test_each_bound_points_the_right_way(sqlite_store: SqliteEventStore) -> None:
    data = await phase(
        sqlite_store,
        errors={"baseline": 0.01, "candidate": 0.08},
        latency={"baseline": 0.05, "candidate": 0.05},
        conversion={"baseline": 0.30, "candidate": 0.10},
    )
    assert evaluate({"metric": "error_rate", "max_increase": 0.01}, data).status == "regressed"  # type: ignore[attr-defined]
    assert evaluate({"metric": "error_rate", "max_increase": 0.5}, data).status == "holds"  # type: ignore[attr-defined]
    assert evaluate({"metric": "error_rate", "max": 0.02}, data).status == "regressed"  # type: ignore[attr-defined]
    assert evaluate({"metric": "latency_p99", "max_ratio": 1.3}, data).status == "holds"  # type: ignore[attr-defined]
    low_conversion = evaluate({"metric": "feedback:conversion", "min_ratio": 0.9}, data)
    assert low_conversion.status == "regressed"  # type: ignore[attr-defined]
    assert low_conversion.confidence_bound < 0.0  # type: ignore[attr-defined]  # upper bound of B - 0.9 A


async def test_slower_candidate_breaks_the_latency_ratio(sqlite_store: SqliteEventStore) -> None:
    data = await phase(
        sqlite_store,
        errors={"baseline": 0.0, "candidate": 0.0},
        latency={"baseline": 0.05, "candidate": 0.09},
        conversion={"baseline": 0.1, "candidate": 0.1},
    )
    result = evaluate({"metric": "latency_p99", "max_ratio": 1.2}, data)
    assert result.status == "regressed"  # type: ignore[attr-defined]
    assert result.candidate > 1.5 * result.baseline  # type: ignore[attr-defined]
    assert evaluate({"metric": "latency", "max_ratio": 1.2}, data).status == "regressed"  # type: ignore[attr-defined]


def test_shadow_disagreement_against_its_bound() -> None:
    empty = PhaseData("c", 0, {})
    bad = evaluate({"metric": "shadow_disagreement", "max": 0.05}, empty, shadow=ShadowTally(1000, 150))
    assert bad.status == "regressed"  # type: ignore[attr-defined]
    fine = evaluate({"metric": "shadow_disagreement", "max": 0.05}, empty, shadow=ShadowTally(1000, 0))
    assert fine.status == "holds" and fine.standard_error > 0  # type: ignore[attr-defined]
    unseen = evaluate({"metric": "shadow_disagreement", "max": 0.05}, empty, shadow=None)
    assert unseen.status == "insufficient_data"  # type: ignore[attr-defined]


def test_the_p_value_is_a_running_minimum() -> None:
    empty = PhaseData("c", 0, {})
    result = evaluate(
        {"metric": "shadow_disagreement", "max": 0.05}, empty, shadow=ShadowTally(400, 20), previous_p=0.01
    )
    assert result.p_value == 0.01 and result.status == "regressed"  # type: ignore[attr-defined]


def test_guardrail_keys_name_metric_and_bound() -> None:
    assert guardrail_key(GuardrailConfig(metric="error_rate", max_increase=0.01)) == "error_rate/max_increase"
    with pytest.raises(ValueError):
        GuardrailConfig(metric="error_rate")
