"""The report laid out as sections of paragraphs, lists, tables and figures, all text already formatted.

Markdown and HTML render this one layout, so both show the same sections, tables and numbers; each
only decides how a block looks (and HTML draws the figures, which Markdown names).
"""

from __future__ import annotations

from experiments.report import text
from experiments.report.blocks import Block, Bullets, Figure, Paragraph, Section, Table, Tone
from experiments.report.metric_sections import metric_sections
from experiments.report.model import Report, TimelineEntry
from experiments.report.novelty import spans_days
from experiments.report.segments import has_segments, segments_section

_ACTIONS = {
    "ship": "Ship",
    "roll_back": "Roll back",
    "keep_running": "Keep running",
    "unhealthy": "Unhealthy: no decision",
}
# Split states after which nothing is compared any more (everyone gets one version).
_ENDED = frozenset({"promoted", "rolled_back"})
_ACTION_TONES: dict[str, Tone] = {"ship": "ok", "roll_back": "warning", "unhealthy": "blocking"}


def _decision(report: Report) -> Section:
    """The one verdict, first: its action, then its reasons in the order they weigh (goals decide,
    guardrails can block, health can invalidate), then the plan."""
    verdict = report.verdict
    headline = _ACTIONS.get(verdict.action, verdict.action)
    if verdict.winner:
        headline += f": {verdict.winner}"
    if verdict.action == "keep_running" and verdict.more_units is not None:
        headline += f", about {verdict.more_units:,} more units"
    tone = _ACTION_TONES.get(verdict.action, "note")
    blocks: list[Block] = [Paragraph(headline, tone), Bullets(verdict.reasons)]
    if verdict.planned_units is not None and verdict.progress is not None:
        blocks.append(
            Paragraph(
                f"Planned: {verdict.planned_units:,} units for the pre-registered minimum detectable "
                f"effect; {text.share(min(verdict.progress, 1.0))} of the way there."
            )
        )
    if report.header.state in _ENDED:
        blocks.append(
            Paragraph(
                f"The experiment has ended ({report.header.state}): traffic since then is not analysed. "
                "The allocation history and the timeline show the phases before and what ended it."
            )
        )
    return Section("decision", "Verdict", tuple(blocks))


def _health(report: Report) -> Section:
    """The checks behind the verdict's health layer; a failed one is already a reason above."""
    banner = report.health
    if banner.ok:
        lead = Paragraph("Every health check passes: the data can be trusted.")
    else:
        lead = Paragraph(
            "The verdict is invalidated: " + "; ".join(check.detail for check in banner.blocking), "blocking"
        )
    rows = tuple((check.name, check.level, check.detail) for check in banner.checks)
    return Section("health", "Health", (lead, Table(("check", "status", "detail"), rows)))


def _setup(report: Report) -> Section:
    header = report.header
    seq = header.sequential
    arms = ", ".join(f"{arm.name} → {arm.cluster} ({text.share(arm.expected_share)})" for arm in header.arms)
    rows: list[tuple[str, str]] = [
        ("experiment", header.experiment),
        ("kind", header.kind),
        ("arms (control first)", arms),
        ("unit sources", ", ".join(header.unit_sources)),
        ("salt", header.salt),
        ("state", f"{header.state}, phase {header.phase}"),
        ("metrics", ", ".join(header.metrics)),
        ("alpha", f"{header.alpha:g} ({text.level_of(header.alpha)} intervals)"),
        (
            "sequential tests",
            f"mixture tuned at N* = {seq.n_star:,} units (rho = {seq.mixture_rho:.4g}), burn-in "
            f"{seq.burn_in} units per arm; SRM at p <= {seq.srm_alpha:g}, prior concentration "
            f"{seq.srm_prior_concentration:g}",
        ),
        ("analysis window", f"{text.timestamp(header.window.start)} to {text.timestamp(header.window.end)}"),
        ("generated", text.timestamp(header.window.generated_at)),
    ]
    if header.coverage is not None:
        rows.insert(6, ("coverage", f"{header.coverage:g} % of units"))
    blocks: list[Block] = [Table(("setting", "value"), tuple(rows))]
    history = tuple(
        (
            str(record.phase) + (" (current)" if record.current else ""),
            text.timestamp(record.started),
            text.timestamp(record.ended),
            ", ".join(f"{a} {text.share(s)}" for a, s in record.expected_shares.items())
            if record.expected_shares is not None
            else "not recorded",
            ", ".join(f"{arm} {units:,}" for arm, units in record.units.items()) or "none",
            record.change or text.DASH,
        )
        for record in header.history
    )
    blocks.append(
        Table(
            ("phase", "from", "to", "configured split", "units", "opened by"), history, "Allocation history"
        )
    )
    if header.canary is not None:
        plan = header.canary
        steps = tuple(
            (
                str(i) + (" (current)" if i == plan.current_step else ""),
                f"{step.percent:g} %",
                f"{step.min_duration_s:g} s",
                f"{step.min_units:,}",
            )
            for i, step in enumerate(plan.steps)
        )
        blocks.append(Table(("step", "candidate", "min duration", "min units"), steps, "Canary steps"))
        blocks.append(Paragraph(f"Guardrails, checked every {plan.interval_s:g} s:"))
        blocks.append(Bullets(plan.guardrails or ("none",)))
    return Section("setup", "Setup", tuple(blocks))


def _arms(report: Report) -> Section:
    metrics = list(report.header.metrics)
    columns = ("arm", "cluster", "units", "exposures", "requests", "expected", "observed", *metrics)
    rows = tuple(
        (
            arm.name,
            arm.cluster,
            f"{arm.units:,}",
            f"{arm.exposures:,}",
            f"{arm.requests:,}",
            text.share(arm.expected_share),
            text.share(arm.observed_share),
            *(text.metric_value(m, arm.metrics.get(m)) for m in metrics),
        )
        for arm in report.arms
    )
    return Section("arms", "Arms", (Table(columns, rows),))


def _plots(report: Report) -> Section:
    plots = report.plots
    metric = plots.lift_metric or "the goal metric"
    level = text.level_of(report.header.alpha)
    return Section(
        "plots",
        "Plots",
        (
            Figure(
                "lift",
                f"Cumulative difference in {metric} (treatment - control), {level} confidence sequence",
                plots.notes.get("lift", ""),
            ),
            Figure(
                "exposures",
                "Analysed exposures per arm over time (all phases)",
                plots.notes.get("exposures", ""),
            ),
            Figure("latency", "Latency CDF per arm (current phase)", plots.notes.get("latency", "")),
        ),
    )


def _evidence(entry: TimelineEntry) -> str:
    parts = [
        f"{g.metric} {g.status} (candidate {text.metric_value(g.metric, g.candidate)}, baseline "
        f"{text.metric_value(g.metric, g.baseline)}, {text.p_clause(g.p_value)})"
        for g in entry.guardrails
    ]
    return "; ".join(parts) or text.DASH


def _timeline(report: Report) -> Section:
    if not report.timeline:
        return Section("timeline", "Canary timeline", (Paragraph("No controller decisions are recorded."),))
    rows = tuple(
        (
            text.timestamp(entry.time),
            str(entry.phase),
            entry.action
            + (f" x{entry.count} since {text.timestamp(entry.first_time)}" if entry.count > 1 else ""),
            text.DASH if entry.percent is None else f"step {entry.step}, {entry.percent:g} %",
            ", ".join(f"{arm} {n:,}" for arm, n in entry.units.items()) or text.DASH,
            "; ".join(entry.reasons) or text.DASH,
            _evidence(entry),
        )
        for entry in report.timeline
    )
    columns = ("time", "phase", "action", "step", "units", "reasons", "guardrail evidence")
    return Section("timeline", "Canary timeline", (Table(columns, rows),))


def _shadow(report: Report) -> Section:
    shadow = report.shadow
    if shadow is None:
        return Section(
            "shadow", "Shadow agreement", (Paragraph("No shadow comparisons are recorded in the store."),)
        )
    row = (
        text.timestamp(shadow.time),
        f"{shadow.compared:,}",
        text.share(shadow.agreement_rate),
        text.share(shadow.disagreement_rate),
        text.share(shadow.limit),
        text.p_value(shadow.p_value),
        shadow.status,
    )
    columns = ("as of", "compared", "agreement", "disagreement", "limit", "p (always valid)", "status")
    return Section("shadow", "Shadow agreement", (Table(columns, (row,)),))


def _novelty(report: Report) -> Section:
    rows = tuple(
        (
            row.metric,
            row.treatment,
            row.day,
            f"{row.control_units:,} / {row.treatment_units:,}",
            text.metric_value(row.metric, row.difference),
            text.interval(row.metric, row.ci_low, row.ci_high),
            text.p_value(row.p_value),
        )
        for row in report.novelty
    )
    level = text.level_of(report.header.alpha)
    columns = ("metric", "arm", "day", "units (control / arm)", "difference", f"{level} CI", "p")
    lead = Paragraph(
        "Each goal on the events of one day since the unit's first exposure: an effect that fades "
        "is novelty, one that grows is primacy. Descriptive, fixed-horizon; the verdict does not use it."
    )
    return Section("novelty", "Effect by days since first exposure", (lead, Table(columns, rows)))


def _methods(report: Report) -> Section:
    rows = tuple((note.topic, note.method, note.reference) for note in report.methods)
    return Section(
        "methods", "Methods", (Table(("topic", "method", "reference"), rows), Paragraph(report.raw_events))
    )


def title_of(report: Report) -> str:
    return f"Experiment report: {report.experiment}"


def layout(report: Report) -> tuple[Section, ...]:
    """The report's sections in reading order: only those the experiment has (no canary timeline for
    an A/B test, no shadow section without shadow comparisons, no novelty within one day, no
    segments unless the experiment records some)."""
    canary = report.kind == "canary" or bool(report.timeline)
    return (
        _decision(report),
        _health(report),
        _setup(report),
        _arms(report),
        *metric_sections(report),
        *((segments_section(report),) if has_segments(report) else ()),
        *((_novelty(report),) if spans_days(report.novelty) else ()),
        _plots(report),
        *((_timeline(report),) if canary else ()),
        *((_shadow(report),) if report.shadow is not None else ()),
        _methods(report),
    )
