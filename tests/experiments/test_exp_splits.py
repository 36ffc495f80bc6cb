"""A/B, canary and shadow splits: stickiness across replicas and restarts, forcing, namespaces,
ramps, state changes."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import TypeAdapter
from scipy import stats as sps

from experiments.config import AbConfig, CanaryConfig, ExperimentConfig, ShadowConfig
from experiments.splits import (
    BASELINE,
    CANDIDATE,
    UNASSIGNED,
    AbSplit,
    CanarySplit,
    InvalidTransition,
    ShadowSplit,
    SplitStatus,
    build_split,
)
from experiments.store.base import EventStore
from experiments.sync import SplitStateSync
from gateway.core.context import Principal, RequestContext

Context = Callable[..., RequestContext]
UNITS = [f"u{i}" for i in range(4000)]


def ab_config(**overrides: Any) -> AbConfig:
    raw: dict[str, Any] = {
        "kind": "ab",
        "unit": ["header:x-user-id", "cookie:turnout_uid"],
        "arms": {"control": {"cluster": "v1", "weight": 50}, "treatment": {"cluster": "v2", "weight": 50}},
    }
    raw.update(overrides)
    config = TypeAdapter(ExperimentConfig).validate_python(raw)
    assert isinstance(config, AbConfig)
    return config


def canary_config(**overrides: Any) -> CanaryConfig:
    raw: dict[str, Any] = {
        "kind": "canary",
        "unit": "header:x-user-id",
        "baseline": {"cluster": "v1"},
        "candidate": {"cluster": "v2"},
        "steps": [{"percent": 5}, {"percent": 25}, {"percent": 50}, {"percent": 100}],
    }
    raw.update(overrides)
    return CanaryConfig.model_validate(raw)


def arms_of(split: Any, context: Context, units: list[str] = UNITS) -> list[str]:
    return [split.choose(context({"x-user-id": unit})).arm for unit in units]


def test_same_unit_same_arm_across_calls_and_replicas(context: Context) -> None:
    config = ab_config()
    replica_a, replica_b = AbSplit("risk-ab", config), AbSplit("risk-ab", config)
    first = arms_of(replica_a, context)
    assert arms_of(replica_a, context) == first
    assert arms_of(replica_b, context) == first
    assert set(first) == {"control", "treatment"}


def test_salt_decides_the_assignment(context: Context) -> None:
    same_salt = AbSplit("other-name", ab_config(salt="risk-ab"))
    assert arms_of(same_salt, context) == arms_of(AbSplit("risk-ab", ab_config()), context)
    assert arms_of(AbSplit("other-name", ab_config()), context) != arms_of(same_salt, context)


def test_split_follows_weights(context: Context) -> None:
    split = AbSplit(
        "w", ab_config(arms={"a": {"cluster": "v1", "weight": 80}, "b": {"cluster": "v2", "weight": 20}})
    )
    counts = Counter(arms_of(split, context))
    assert sps.chisquare([counts["a"], counts["b"]], [0.8 * len(UNITS), 0.2 * len(UNITS)]).pvalue > 0.001


async def test_assignment_survives_a_restart(context: Context, sqlite_store: EventStore) -> None:
    split = AbSplit("risk-ab", ab_config())
    split.set_weights({"control": 30, "treatment": 70})
    await SplitStateSync(sqlite_store, {"risk-ab": split}).publish(split)
    before = arms_of(split, context)
    restarted = AbSplit("risk-ab", ab_config())
    await SplitStateSync(sqlite_store, {"risk-ab": restarted}).poll_once()
    assert restarted.state.weights == (("control", 30.0), ("treatment", 70.0))
    assert arms_of(restarted, context) == before


def test_forcing_needs_the_scope(context: Context) -> None:
    split = AbSplit("f", ab_config())
    unit = next(u for u in UNITS if split.choose(context({"x-user-id": u})).arm == "control")
    header = {"x-user-id": unit, "x-turnout-force-arm": "treatment"}
    plain = split.choose(context(header, principal=Principal(id="p")))
    assert plain.arm == "control" and not plain.forced
    allowed = split.choose(
        context(header, principal=Principal(id="p", scopes=frozenset({"experiments:force"})))
    )
    assert allowed.arm == "treatment" and allowed.cluster == "v2" and allowed.forced and not allowed.analyzed
    unknown = split.choose(
        context(
            {**header, "x-turnout-force-arm": "nope"},
            principal=Principal(id="p", scopes=frozenset({"experiments:force"})),
        )
    )
    assert unknown.arm == "control" and not unknown.forced


def test_cookie_issued_when_no_unit_and_the_cookie_keeps_the_arm(context: Context) -> None:
    split = AbSplit("c", ab_config())
    first = split.choose(context())
    assert first.set_cookie is not None and first.unit_id is not None and first.analyzed
    cookie_value = first.set_cookie.split(";")[0]
    again = split.choose(context({"cookie": cookie_value}))
    assert again.set_cookie is None and again.unit_id == first.unit_id and again.arm == first.arm


def test_without_unit_and_without_cookie_issuance_the_request_is_unassigned(context: Context) -> None:
    split = AbSplit("n", ab_config(unit=["header:x-user-id"], issue_cookie=False))
    assignment = split.choose(context())
    assert assignment.arm == UNASSIGNED and assignment.cluster == "v1" and assignment.excluded


def test_namespaced_experiments_never_share_a_unit(context: Context) -> None:
    left = AbSplit("left", ab_config(namespace={"name": "risk", "range": [0, 5000]}))
    right = AbSplit("right", ab_config(namespace={"name": "risk", "range": [5000, 10000]}))
    in_left = [a != UNASSIGNED for a in arms_of(left, context)]
    in_right = [a != UNASSIGNED for a in arms_of(right, context)]
    assert not any(a and b for a, b in zip(in_left, in_right, strict=True))
    assert all(a or b for a, b in zip(in_left, in_right, strict=True))
    outside = left.choose(context({"x-user-id": UNITS[in_left.index(False)]}))
    assert outside.cluster == "v1" and outside.excluded


def test_coverage_and_weights_changes(context: Context) -> None:
    split = AbSplit("cov", ab_config(coverage=10))
    narrow = arms_of(split, context)
    assert 0.85 < narrow.count(UNASSIGNED) / len(UNITS) < 0.95
    split.set_coverage(100)
    wide = arms_of(split, context)
    assert all(w == n for n, w in zip(narrow, wide, strict=True) if n != UNASSIGNED)
    assert split.current_phase == 0  # coverage keeps the shares: same phase
    split.set_weights({"control": 10, "treatment": 90})
    assert split.current_phase == 1 and split.shares() == pytest.approx({"control": 0.1, "treatment": 0.9})
    with pytest.raises(ValueError):
        split.set_weights({"control": 1})


def test_pause_promote_rollback(context: Context) -> None:
    split = AbSplit("s", ab_config())
    split.pause()
    paused = split.choose(context({"x-user-id": "u1"}))
    assert paused.cluster == "v1" and paused.excluded
    split.resume()
    split.promote("treatment")
    promoted = split.choose(context({"x-user-id": "u1"}))
    assert promoted.arm == "treatment" and promoted.cluster == "v2" and promoted.excluded
    assert split.state.status is SplitStatus.PROMOTED
    with pytest.raises(InvalidTransition):
        split.resume()
    with pytest.raises(InvalidTransition):
        split.rollback()


def test_newer_revision_wins_between_replicas() -> None:
    a, b = AbSplit("r", ab_config()), AbSplit("r", ab_config())
    a.pause()
    assert b.apply_dict(a.state_dict())
    assert b.state.status is SplitStatus.PAUSED
    assert not b.apply_dict(a.state_dict())  # same revision: nothing to do
    stale = AbSplit("r", ab_config()).state_dict()
    assert not b.apply_dict(stale)
    with pytest.raises(ValueError):
        b.apply_dict({**stale, "kind": "canary"})


def test_canary_ramp_never_moves_a_unit_back(context: Context) -> None:
    split = CanarySplit("risk-canary", canary_config())
    seen_candidate: set[str] = set()
    phases = []
    for _ in range(3):
        arms = dict(zip(UNITS, arms_of(split, context), strict=True))
        candidates = {unit for unit, arm in arms.items() if arm == CANDIDATE}
        assert seen_candidate <= candidates
        assert abs(len(candidates) / len(UNITS) - split.state.percent / 100) < 0.03
        seen_candidate = candidates
        phases.append(split.current_phase)
        split.advance()
    assert phases == [0, 1, 2]
    split.advance()  # past the last step: promoted
    assert split.state.status is SplitStatus.PROMOTED
    assert set(arms_of(split, context, UNITS[:200])) == {CANDIDATE}


def test_canary_rollback_pause_and_restart(context: Context) -> None:
    split = CanarySplit("c", canary_config())
    assert split.pause().status is SplitStatus.PAUSED
    assert {a for a in arms_of(split, context)} == {BASELINE, CANDIDATE}  # a paused canary keeps serving
    with pytest.raises(InvalidTransition):
        split.pause()
    split.rollback()
    assert set(arms_of(split, context, UNITS[:300])) == {BASELINE}
    assert split.shares()[CANDIDATE] == 0.0
    restarted = split.restart()
    assert restarted.status is SplitStatus.RUNNING and restarted.percent == 5


def test_a_finished_canary_is_analysed_over_its_last_step() -> None:
    split = CanarySplit("c", canary_config())
    split.advance()  # step 2, 25 %: phase 1
    assert split.analysed_phase() == (1, {BASELINE: 0.75, CANDIDATE: 0.25})
    split.set_percent(30)  # an operator's override: phase 2 at 30 %
    split.promote()  # phase 3, everyone on the candidate
    assert split.current_phase == 3 and split.shares() == {BASELINE: 0.0, CANDIDATE: 1.0}
    assert split.analysed_phase() == (2, pytest.approx({BASELINE: 0.7, CANDIDATE: 0.3}))
    # The last step's percent survives a restart through the stored state...
    again = CanarySplit("c", canary_config())
    assert again.apply_dict(split.state_dict())
    assert again.analysed_phase() == split.analysed_phase()
    # ...and a state stored before it was kept falls back to the step's configured percent.
    older = {key: value for key, value in split.state_dict().items() if key != "final_percent"}
    older["revision"] += 1
    assert again.apply_dict(older)
    assert again.analysed_phase() == (2, {BASELINE: 0.75, CANDIDATE: 0.25})
    # Restarted, the canary is analysed in its current phase again.
    split.restart()
    assert split.analysed_phase() == (4, {BASELINE: 0.95, CANDIDATE: 0.05})


def test_canary_forcing_uses_arm_names(context: Context) -> None:
    split = CanarySplit("c", canary_config())
    scoped = Principal(id="ops", scopes=frozenset({"experiments:force"}))
    forced = split.choose(context({"x-user-id": "u1", "x-turnout-force-arm": CANDIDATE}, principal=scoped))
    assert forced.arm == CANDIDATE and forced.cluster == "v2" and forced.forced


def test_shadow_split_mirrors_a_fraction(context: Context) -> None:
    config = ShadowConfig.model_validate(
        {"kind": "shadow", "primary": {"cluster": "v1"}, "mirrors": [{"cluster": "v2", "fraction": 0.25}]}
    )
    split = ShadowSplit("sh", config, rng=random.Random(7))
    choices = [split.choose(context()) for _ in range(4000)]
    assert {c.cluster for c in choices} == {"v1"}
    mirrored = sum(1 for c in choices if c.mirrors == (("v2", "v2"),))
    assert abs(mirrored / 4000 - 0.25) < 0.03
    split.pause()
    assert split.choose(context()).mirrors == ()
    split.resume()
    split.set_fraction("v2", 1.0)
    assert split.choose(context()).mirrors == (("v2", "v2"),)


def test_build_split_picks_the_kind() -> None:
    assert isinstance(build_split("a", ab_config()), AbSplit)
    assert isinstance(build_split("c", canary_config()), CanarySplit)
