"""The canary timeline and shadow agreement, read from the controller's stored decisions.

Each decision carries its evidence (`experiments.controller`): the step, percent, units and requests
per arm, and every guardrail's estimate, always-valid p-value and confidence bound. A controller
holds every interval until a step's minimums are met, so consecutive holds in one phase fold into one
entry that keeps the last hold's evidence. Shadow agreement exists in the store only as evidence of a
`shadow_disagreement` guardrail (the live tally is the gateway's, in memory); the latest one is shown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from experiments.events import Decision
from experiments.report.model import GuardrailEvidence, ShadowAgreement, TimelineEntry

SHADOW_METRIC = "shadow_disagreement"
HOLD = "hold"


def _float(value: Any) -> float:
    """A number from stored evidence; JSON keeps NaN and infinities as null."""
    return float(value) if isinstance(value, int | float) else math.nan


def _count(value: Any) -> int:
    number = _float(value)
    return int(number) if math.isfinite(number) else 0


def _counts(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        return {}
    return {str(arm): _count(count) for arm, count in value.items()}


def _guardrail(raw: Mapping[str, Any]) -> GuardrailEvidence:
    return GuardrailEvidence(
        metric=str(raw.get("metric", "")),
        bound=str(raw.get("bound", "")),
        threshold=_float(raw.get("threshold")),
        status=str(raw.get("status", "")),
        baseline=_float(raw.get("baseline")),
        candidate=_float(raw.get("candidate")),
        p_value=_float(raw.get("p_value")),
        confidence_bound=_float(raw.get("confidence_bound")),
        candidate_n=_count(raw.get("candidate_n")),
    )


def _entry(decision: Decision) -> TimelineEntry:
    evidence = decision.evidence
    step, percent = evidence.get("step"), evidence.get("percent")
    guardrails = evidence.get("guardrails", [])
    return TimelineEntry(
        time=decision.time,
        first_time=decision.time,
        count=1,
        phase=decision.phase,
        action=decision.action,
        reasons=decision.reasons,
        step=int(step) if isinstance(step, int | float) else None,
        percent=float(percent) if isinstance(percent, int | float) else None,
        units=_counts(evidence.get("units")),
        requests=_counts(evidence.get("requests")),
        guardrails=tuple(_guardrail(g) for g in guardrails if isinstance(g, Mapping)),
    )


def timeline(decisions: Sequence[Decision]) -> tuple[TimelineEntry, ...]:
    """Decisions oldest first, consecutive holds of one phase folded together."""
    entries: list[TimelineEntry] = []
    for decision in decisions:
        entry = _entry(decision)
        previous = entries[-1] if entries else None
        if (
            previous is not None
            and previous.action == HOLD
            and entry.action == HOLD
            and previous.phase == entry.phase
        ):
            entries[-1] = replace(entry, first_time=previous.first_time, count=previous.count + 1)
        else:
            entries.append(entry)
    return tuple(entries)


def shadow_agreement(entries: Sequence[TimelineEntry]) -> ShadowAgreement | None:
    """The newest shadow tally in the timeline, or None when no decision recorded one."""
    for entry in reversed(entries):
        for guardrail in entry.guardrails:
            if guardrail.metric == SHADOW_METRIC and guardrail.candidate_n > 0:
                rate = guardrail.candidate
                return ShadowAgreement(
                    time=entry.time,
                    phase=entry.phase,
                    compared=guardrail.candidate_n,
                    disagreement_rate=rate,
                    agreement_rate=1.0 - rate,
                    limit=guardrail.threshold,
                    p_value=guardrail.p_value,
                    status=guardrail.status,
                )
    return None
