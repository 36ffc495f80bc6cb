"""Reports built from real SQLite stores fed with traffic of known effect through real splits."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pytest

from experiments.config import AbConfig, BlueGreenConfig, CanaryConfig
from experiments.controller import CanaryController
from experiments.events import Event, Exposure, Feedback, OutputSummary, exposure_for, outcome_for
from experiments.guardrails import ShadowTally
from experiments.report import Report, build_report, render
from experiments.splits import AbSplit, CanarySplit, build_split
from experiments.store.base import EventStore
from experiments.store.sqlite import SqliteEventStore
from gateway.core.context import RequestContext

METRICS = ["latency", "error_rate", "latency_p99", "feedback:conversion"]
START = 1_700_000_000.0
# Units arrive one per second; each sends its requests a tenth of a second apart.
UNIT_SPACING_S = 1.0
REQUEST_SPACING_S = 0.1


def ab_config(**overrides: object) -> AbConfig:
    raw: dict[str, object] = {
        "kind": "ab",
        "unit": "header:x-user-id",
        "arms": {"control": {"cluster": "v1"}, "treatment": {"cluster": "v2"}},
        "metrics": METRICS,
        "expected_units": 4000,
    }
    raw.update(overrides)
    return AbConfig.model_validate(raw)


def context_of(unit: str) -> RequestContext:
    return RequestContext(
        method="POST", path="/v2/models/m/infer", query="", headers={"x-user-id": unit},
        client_ip="127.0.0.1", started=time.monotonic(),
    )  # fmt: skip


@dataclass
class Sent:
    """What was sent per arm, counted independently of the store."""

    units: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    last_time: float = 0.0


async def feed(
    store: EventStore,
    split: AbSplit | CanarySplit,
    units: Sequence[str],
    *,
    rng: np.random.Generator,
    start: float = START,
    requests_per_unit: int = 3,
    error_rate: Mapping[str, float] | None = None,
    conversion: Mapping[str, float] | None = None,
    median_latency_s: float = 0.05,
    fraud_rate: Mapping[str, float] | None = None,
) -> Sent:
    """Each unit sends its requests through the split (exposure + outcome each, lognormal latency) and
    converts (feedback by unit id) with its arm's probability."""
    sent = Sent()
    events: list[Event] = []
    for i, unit in enumerate(units):
        at = start + i * UNIT_SPACING_S
        arm = ""
        for r in range(requests_per_unit):
            assignment = split.choose(context_of(unit))
            arm = assignment.arm
            request_id = uuid.uuid4().hex
            now = at + r * REQUEST_SPACING_S
            failed = rng.random() < (error_rate or {}).get(arm, 0.01)
            latency = float(rng.lognormal(math.log(median_latency_s), 0.3))
            outputs: tuple[OutputSummary, ...] = ()
            if fraud_rate is not None:
                fraud = rng.random() < fraud_rate[arm]
                outputs = (OutputSummary("label", ("fraud" if fraud else "ok",), 0.9 if fraud else 0.1),)
            events.append(exposure_for(assignment, request_id, now))
            events.append(outcome_for(assignment, request_id, now + latency, latency_s=latency,
                                      status=500 if failed else 200, outputs=outputs))  # fmt: skip
            sent.requests[arm] += 1
            sent.last_time = max(sent.last_time, now + latency)
        sent.units[arm] += 1
        if conversion and rng.random() < conversion.get(arm, 0.0):
            events.append(Feedback("conversion", 1.0, at + 1.0, unit_id=unit))
            sent.last_time = max(sent.last_time, at + 1.0)
    await store.write(events)
    return sent


def users(count: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


async def ab_report(store: EventStore, split: AbSplit, config: AbConfig) -> Report:
    return await build_report("exp", config, split, store, now=START + 86_400.0)


async def test_a_better_conversion_ships_with_exact_counts_and_the_true_effect(store: EventStore) -> None:
    """On both stores: the raw rows come back typed from SQLite columns and from Redis strings."""
    config = ab_config()
    split = AbSplit("exp", config)
    rates = {"control": 0.10, "treatment": 0.16}
    sent = await feed(store, split, users(4000), rng=np.random.default_rng(7), conversion=rates)
    report = await ab_report(store, split, config)

    arms = {arm.name: arm for arm in report.arms}
    assert [arm.name for arm in report.arms] == ["control", "treatment"]
    for name in ("control", "treatment"):
        assert arms[name].units == sent.units[name]
        assert arms[name].requests == arms[name].exposures == sent.requests[name] == 3 * sent.units[name]
    assert arms["control"].cluster == "v1" and arms["treatment"].cluster == "v2"

    goal = report.goals[0]
    assert goal.metric == "feedback:conversion" and goal.direction == "better"
    # The true difference is 0.06; with ~2,000 units per arm its standard error is about 0.011.
    assert goal.difference == pytest.approx(0.06, abs=0.035)
    assert goal.cs_low < goal.ci_low < goal.difference < goal.ci_high < goal.cs_high
    assert goal.cs_low > 0.0
    assert report.decision.action == "ship" and report.decision.winner == "treatment"
    assert report.health.ok and all(check.level == "ok" for check in report.health.checks)
    assert {c.metric for c in report.guardrails} == {"latency", "error_rate", "latency_p99"}

    # The plotted lift ends exactly where the table's comparison is, in at most 200 points.
    lift = report.plots.lift[0]
    assert report.plots.lift_metric == "feedback:conversion" and lift.treatment == "treatment"
    assert 100 < len(lift.time) <= 200 and list(lift.time) == sorted(lift.time)
    assert lift.difference[-1] == pytest.approx(goal.difference, rel=1e-9)
    assert (lift.cs_low[-1], lift.cs_high[-1]) == pytest.approx((goal.cs_low, goal.cs_high), rel=1e-9)
    assert lift.control_units[-1] == sent.units["control"]
    assert not math.isfinite(lift.cs_low[0])  # inside the burn-in the sequence is unbounded

    exposures = {series.arm: series for series in report.plots.exposures}
    assert exposures["treatment"].exposures[-1] == sent.requests["treatment"]
    assert exposures["control"].units[-1] == sent.units["control"]
    assert len(exposures["control"].time) <= 200
    for cdf in report.plots.latency_cdfs:
        assert cdf.requests == sent.requests[cdf.arm] and cdf.cumulative[-1] == pytest.approx(1.0)
        assert list(cdf.cumulative) == sorted(cdf.cumulative)
    p50 = next(row for row in report.latency_quantiles if row.quantile == "p50")
    assert p50.control_value.value == pytest.approx(0.05, rel=0.05)
    assert p50.control_value.ci_low <= p50.control_value.value <= p50.control_value.ci_high
    # Both arms share the latency distribution: their medians are at most one 2 % histogram bucket apart.
    assert abs(p50.difference) <= 0.021 * p50.control_value.value

    header = report.header
    assert header.window.start == START and header.window.end == pytest.approx(sent.last_time)
    assert header.salt == "exp" and header.unit_sources == ("header:x-user-id",)
    assert header.sequential.n_star == 4000 and header.sequential.burn_in == 100
    (phase,) = header.history
    assert phase.current and phase.expected_shares == {"control": 0.5, "treatment": 0.5}
    assert phase.units == dict(sent.units) and phase.started == START
    assert report.timeline == () and report.shadow is None
    assert "export_events" in report.raw_events


async def test_a_worse_error_rate_rolls_back(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    split = AbSplit("exp", config)
    errors = {"control": 0.01, "treatment": 0.08}
    await feed(sqlite_store, split, users(2500), rng=np.random.default_rng(8), error_rate=errors)
    report = await ab_report(sqlite_store, split, config)
    errors_row = next(c for c in report.guardrails if c.metric == "error_rate")
    assert errors_row.direction == "worse"
    assert errors_row.difference == pytest.approx(0.07, abs=0.02)
    assert report.decision.action == "roll_back"
    assert any("error_rate" in reason for reason in report.decision.reasons)
    assert report.plots.lift_metric == "error_rate"  # the plot shows what the decision rests on
    assert report.plots.lift[0].cs_low[-1] > 0.0


async def test_a_sample_ratio_mismatch_blocks_the_decision(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    split = AbSplit("exp", config)
    # A third of the treatment's units never reach the log: about 60/40 under a 50/50 split.
    kept = [u for i, u in enumerate(users(3000)) if split.arm_of(u) == "control" or i % 3 != 0]
    rates = {"control": 0.10, "treatment": 0.20}
    await feed(sqlite_store, split, kept, rng=np.random.default_rng(9), conversion=rates)
    report = await ab_report(sqlite_store, split, config)
    assert report.decision.action == "unhealthy"
    assert any("sample ratio mismatch" in reason for reason in report.decision.reasons)
    assert not report.health.ok
    srm = next(check for check in report.health.checks if check.name == "sample ratio")
    assert srm.level == "blocking" and "sample ratio mismatch" in srm.detail
    assert report.health.srm is not None and report.health.srm.p_value < 1e-6
    shares = {arm.name: arm.observed_share for arm in report.arms}
    assert shares["control"] == pytest.approx(0.6, abs=0.03)


async def test_units_seen_in_two_arms_block_the_decision(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    split = AbSplit("exp", config)
    population = users(1000)
    await feed(sqlite_store, split, population, rng=np.random.default_rng(10))
    # A lost cookie: 50 units come back in the other arm.
    other = {"control": "treatment", "treatment": "control"}
    crossed = [
        Exposure("exp", other[split.arm_of(u)], u, uuid.uuid4().hex, START + 5000.0) for u in population[:50]
    ]
    await sqlite_store.write(crossed)
    report = await ab_report(sqlite_store, split, config)
    assert report.decision.action == "unhealthy"
    check = next(check for check in report.health.checks if check.name == "crossovers")
    assert check.level == "blocking" and report.health.crossovers == 50


async def test_too_few_units_keep_running(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    split = AbSplit("exp", config)
    sent = await feed(sqlite_store, split, users(60), rng=np.random.default_rng(11))
    report = await ab_report(sqlite_store, split, config)
    assert report.decision.action == "keep_running"
    fewest = min(sent.units.values())
    assert report.decision.more_units == (100 - fewest) * 2
    size = next(check for check in report.health.checks if check.name == "sample size")
    assert size.level == "blocking" and "too few units" in size.detail
    assert report.plots.notes["lift"]  # the plot says why its band is missing
    assert not any(math.isfinite(v) for series in report.plots.lift for v in series.cs_low)


async def test_an_empty_store_still_reports(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    report = await ab_report(sqlite_store, AbSplit("exp", config), config)
    assert report.decision.action == "keep_running"
    assert [arm.units for arm in report.arms] == [0, 0]
    assert report.plots.exposures == () and report.plots.notes["exposures"]
    assert all(cdf.requests == 0 for cdf in report.plots.latency_cdfs)
    assert '"experiment": "exp"' in render(report, "json")
    assert render(report, "md").startswith("# Experiment report: exp")


async def test_only_ab_tests_and_canaries_have_reports(sqlite_store: SqliteEventStore) -> None:
    colors = {"blue": {"cluster": "v1"}, "green": {"cluster": "v2"}}
    config = BlueGreenConfig.model_validate({"kind": "blue_green", "active": "blue", "colors": colors})
    blue_green = build_split("bg", config)
    with pytest.raises(ValueError, match="reports cover A/B tests and canaries"):
        await build_report("bg", config, blue_green, sqlite_store, now=START)


async def test_model_outputs_are_described_apart_from_the_decision(sqlite_store: SqliteEventStore) -> None:
    config = ab_config(metrics=["error_rate", "output:label"])
    split = AbSplit("exp", config)
    fraud = {"control": 0.05, "treatment": 0.25}
    await feed(sqlite_store, split, users(1500), rng=np.random.default_rng(15), fraud_rate=fraud)
    report = await ab_report(sqlite_store, split, config)
    (described,) = report.descriptive
    # The score is 0.9 for fraud and 0.1 otherwise: its mean moves by 0.8 x 0.20 = 0.16.
    assert described.metric == "output:label" and described.difference == pytest.approx(0.16, abs=0.03)
    arms = {arm.name: arm for arm in report.arms}
    assert arms["treatment"].labels["label"]["fraud"] == pytest.approx(0.25, abs=0.03)
    assert report.decision.action == "keep_running"  # a changed output alone decides nothing
    markdown = render(report, "md")
    assert "## Descriptive metrics" in markdown and "| label | treatment | fraud 2" in markdown


def canary_config() -> CanaryConfig:
    return CanaryConfig.model_validate(
        {
            "kind": "canary",
            "unit": "header:x-user-id",
            "baseline": {"cluster": "v1"},
            "candidate": {"cluster": "v2"},
            "steps": [{"percent": 50, "min_units": 1000}, {"percent": 100}],
            "guardrails": [
                {"metric": "error_rate", "max_increase": 0.05},
                {"metric": "shadow_disagreement", "max": 0.2},
            ],
            "metrics": ["latency", "error_rate"],
        }
    )


async def test_a_canary_report_holds_its_timeline_history_and_shadow_agreement(
    sqlite_store: SqliteEventStore,
) -> None:
    config = canary_config()
    split = build_split("canary", config, clock=lambda: START)
    assert isinstance(split, CanarySplit)
    ticks = iter([START + 300.0, START + 700.0, START + 1100.0])
    controller = CanaryController(
        "canary", config, split, sqlite_store, clock=lambda: next(ticks), shadow=lambda: ShadowTally(500, 10)
    )
    await controller.restore()
    rng = np.random.default_rng(12)
    await feed(sqlite_store, split, users(300, "a"), rng=rng, start=START)
    first = await controller.tick()
    await feed(sqlite_store, split, users(300, "b"), rng=rng, start=START + 400.0)
    second = await controller.tick()
    bad = {"baseline": 0.01, "candidate": 0.40}
    await feed(sqlite_store, split, users(300, "c"), rng=rng, start=START + 800.0, error_rate=bad)
    third = await controller.tick()
    assert first is not None and second is not None and third is not None
    assert (first.action, second.action, third.action) == ("hold", "hold", "rollback")

    report = await build_report("canary", config, split, sqlite_store, now=START + 2000.0)
    assert report.kind == "canary" and report.header.state == "rolled_back"
    # Rolled back, the canary sends nobody to the candidate: its analysis is that of its last step.
    assert report.decision.reasons[0] == (
        "the canary is rolled back: this analysis covers its last step (phase 0), the last with traffic "
        "on both arms"
    )
    assert (
        report.decision.action == "roll_back"
        and "guardrail: candidate is worse on error_rate, which blocks shipping" in report.decision.reasons
    )
    assert sum(arm.units for arm in report.arms) == 900 and min(arm.units for arm in report.arms) > 400
    hold, rollback = report.timeline
    assert hold.action == "hold" and hold.count == 2 and hold.first_time == START + 300.0
    assert hold.time == START + 700.0 and hold.percent == 50.0 and hold.units == second.evidence["units"]
    assert rollback.action == "rollback" and any("error_rate" in r for r in rollback.reasons)
    regressed = next(g for g in rollback.guardrails if g.metric == "error_rate")
    assert regressed.status == "regressed" and regressed.p_value <= 0.05

    assert report.shadow is not None
    assert report.shadow.compared == 500 and report.shadow.agreement_rate == pytest.approx(0.98)
    assert report.shadow.limit == 0.2 and report.shadow.status == "holds"

    before, after = report.header.history
    assert before.phase == 0 and before.expected_shares == {"baseline": 0.5, "candidate": 0.5}
    assert sum(before.units.values()) == 900 and not before.current
    assert after.current and after.change.startswith("rollback: error_rate regressed")
    assert report.header.canary is not None and report.header.canary.guardrails[0] == (
        "error_rate max_increase 0.05"
    )
    assert report.plots.phase_starts == ((0, START),)
    assert any(note.topic == "canary guardrails" for note in report.methods)
    markdown = render(report, "md")
    timeline_md = markdown[markdown.index("## Canary timeline") : markdown.index("## Shadow agreement")]
    assert "| hold x2 since " in timeline_md and "| rollback |" in timeline_md
    assert "error_rate regressed" in timeline_md and "shadow_disagreement holds" in timeline_md
    assert "p < 0.0001" in timeline_md and "The experiment has ended (rolled_back)" in markdown
    html = render(report, "html")
    assert html.count("<svg") == 3 and "rollback: error_rate regressed" in html


async def test_json_keeps_the_binding_contract(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    split = AbSplit("exp", config)
    sent = await feed(sqlite_store, split, users(150), rng=np.random.default_rng(13))
    report = await ab_report(sqlite_store, split, config)

    def refuse(constant: str) -> float:
        raise AssertionError(f"JSON carries {constant}; missing numbers must be null")

    payload = json.loads(render(report, "json"), parse_constant=refuse)
    assert isinstance(payload, dict)
    arms = {arm["name"]: arm for arm in payload["arms"]}
    for name, units in sent.units.items():
        assert arms[name]["units"] == units and isinstance(arms[name]["units"], int)
        assert arms[name]["requests"] == sent.requests[name]
    assert payload["decision"]["action"] in {"ship", "roll_back", "keep_running", "unhealthy"}
    assert isinstance(payload["decision"]["reasons"], list)
    assert payload["verdict"] == payload["decision"] and isinstance(payload["verdict"]["reasons"], list)
    # About 225 requests per arm are too few for a p99 interval (it needs about 380): null, not NaN;
    # inside the burn-in the confidence sequence is unbounded: null, not -Infinity.
    p99 = next(row for row in payload["latency_quantiles"] if row["quantile"] == "p99")
    assert not p99["enough_data"] and p99["ci_low"] is None and p99["p_value"] is None
    assert payload["plots"]["lift"][0]["cs_low"][0] is None
    with pytest.raises(ValueError, match="unknown report format"):
        render(report, "pdf")


async def test_markdown_has_every_section_and_well_formed_tables(sqlite_store: SqliteEventStore) -> None:
    config = ab_config()
    split = AbSplit("exp", config)
    rates = {"control": 0.10, "treatment": 0.16}
    await feed(sqlite_store, split, users(1500), rng=np.random.default_rng(14), conversion=rates)
    report = await ab_report(sqlite_store, split, config)
    markdown = render(report, "md")
    assert markdown.startswith("# Experiment report: exp\n")
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [
        "Verdict",
        "Health",
        "Setup",
        "Arms",
        "Goal metrics",
        "Guardrails",
        "Plots",
        "Methods",
    ]  # fmt: skip: an A/B test without shadow comparisons has neither a timeline nor a shadow section
    assert not re.search(r"\b(nan|inf)\b", markdown, re.IGNORECASE)
    tables = _tables(markdown)
    assert len(tables) >= 7
    for table in tables:
        widths = {_cells(line) for line in table}
        assert len(widths) == 1, table  # every row has the header's number of cells
    arm_rows = next(t for t in tables if t[0].startswith("| arm | cluster |"))
    control_units = next(arm.units for arm in report.arms if arm.name == "control")
    assert f"| control | v1 | {control_units:,} |" in arm_rows[2]
    assert report.decision.action == "ship" and "> **Ship: treatment**" in markdown


def _tables(markdown: str) -> list[list[str]]:
    tables: list[list[str]] = []
    current: list[str] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            current.append(line)
        elif current:
            tables.append(current)
            current = []
    return tables


def _cells(line: str) -> int:
    """Cells of a Markdown table row, not counting escaped pipes."""
    return line.replace("\\|", "").count("|") - 1


async def test_a_bayesian_experiment_reports_chance_to_beat_control_in_json_and_markdown(
    sqlite_store: SqliteEventStore,
) -> None:
    config = ab_config(analysis="bayesian", mde=0.05)
    split = AbSplit("exp", config)
    rates = {"control": 0.10, "treatment": 0.16}
    await feed(sqlite_store, split, users(1500), rng=np.random.default_rng(15), conversion=rates)
    report = await ab_report(sqlite_store, split, config)
    payload = json.loads(render(report, "json"))
    conversion = next(goal for goal in payload["goals"] if goal["metric"] == "feedback:conversion")
    assert conversion["bayes"]["chance_to_beat_control"] > 0.95
    assert conversion["bayes"]["expected_loss"] >= 0.0
    assert all(item["cuped"] is None for item in payload["goals"])  # one phase: no pre-period
    assert payload["verdict"]["action"] == "ship" and payload["verdict"]["planned_units"] > 0
    markdown = render(report, "md")
    assert "Bayesian reading (flat prior)" in markdown and "bayesian reading" in markdown
