"""The metric sections of a laid-out report: goals, guardrails with latency quantiles, descriptive."""

from __future__ import annotations

from experiments.report import text
from experiments.report.blocks import Block, Paragraph, Section, Table
from experiments.report.model import Report
from experiments.status import Comparison


def _comparison_table(items: tuple[Comparison, ...], alpha: float) -> Table:
    level = text.level_of(alpha)
    # Eleven columns fit a 1280 px screen: the relative change carries its interval in one cell, and
    # the fixed-horizon p (no decision rests on it) is left to the JSON.
    columns = (
        "metric", "arm", "control", "treatment", "difference", f"{level} CI", f"{level} CS",
        f"relative ({level} CI)", "p (sequential)", "p (adjusted)", "verdict",
    )  # fmt: skip
    rows = tuple(
        (
            c.metric,
            c.treatment,
            text.metric_value(c.metric, c.control_value),
            text.metric_value(c.metric, c.treatment_value),
            text.metric_value(c.metric, c.difference),
            text.interval(c.metric, c.ci_low, c.ci_high),
            text.interval(c.metric, c.cs_low, c.cs_high),
            f"{text.relative(c.relative)} {text.relative_interval(c.relative_ci_low, c.relative_ci_high)}",
            text.p_value(c.p_value_sequential),
            text.p_value(c.p_value_adjusted),
            c.direction if c.enough_data else "too few units",
        )
        for c in items
    )
    return Table(columns, rows)


def _bayes_table(items: tuple[Comparison, ...], alpha: float) -> Table | None:
    rows = tuple(
        (
            c.metric,
            c.treatment,
            text.share(c.bayes.chance_to_beat_control),
            text.metric_value(c.metric, c.bayes.expected_loss),
            text.interval(c.metric, c.bayes.credible_low, c.bayes.credible_high),
        )
        for c in items
        if c.bayes is not None
    )
    columns = ("metric", "arm", "chance to beat control", "expected loss", f"{text.level_of(alpha)} credible")
    return Table(columns, rows, "Bayesian reading (flat prior)") if rows else None


def _cuped_table(items: tuple[Comparison, ...], alpha: float) -> Table | None:
    rows = tuple(
        (
            c.metric,
            c.treatment,
            text.metric_value(c.metric, c.cuped.difference),
            text.interval(c.metric, c.cuped.ci_low, c.cuped.ci_high),
            text.share(c.cuped.variance_reduction),
        )
        for c in items
        if c.cuped is not None
    )
    columns = ("metric", "arm", "adjusted difference", f"{text.level_of(alpha)} CI", "variance reduction")
    caption = "CUPED: per-unit difference adjusted by each unit's earlier phases"
    return Table(columns, rows, caption) if rows else None


def _extras(items: tuple[Comparison, ...], alpha: float) -> tuple[Block, ...]:
    """The Bayesian and CUPED tables, for the comparisons that have them."""
    return tuple(t for t in (_bayes_table(items, alpha), _cuped_table(items, alpha)) if t is not None)


def metric_sections(report: Report) -> tuple[Section, ...]:
    alpha = report.header.alpha
    goals: tuple[Block, ...] = (
        (
            Paragraph(
                "CI: fixed horizon; CS: always valid. p (adjusted): Benjamini-Hochberg on sequential p."
            ),
            _comparison_table(report.goals, alpha),
            *_extras(report.goals, alpha),
        )
        if report.goals
        else (Paragraph("No goal metric is configured (feedback:NAME metrics are goals)."),)
    )
    level = text.level_of(alpha)
    quantiles = tuple(
        (
            row.quantile,
            row.treatment,
            text.metric_value("latency", row.control_value.value)
            + " "
            + text.interval("latency", row.control_value.ci_low, row.control_value.ci_high),
            text.metric_value("latency", row.treatment_value.value)
            + " "
            + text.interval("latency", row.treatment_value.ci_low, row.treatment_value.ci_high),
            text.metric_value("latency", row.difference),
            text.interval("latency", row.ci_low, row.ci_high),
            text.p_value(row.p_value),
        )
        for row in report.latency_quantiles
    )
    guardrails: list[Block] = [
        Paragraph("Guardrails are reported apart from goals; p (adjusted): Holm on sequential p."),
        _comparison_table(report.guardrails, alpha)
        if report.guardrails
        else Paragraph("No guardrail metric is configured."),
        *_extras(report.guardrails, alpha),
        Table(
            ("quantile", "arm", "control", "treatment", "difference", f"{level} CI", "p"),
            quantiles,
            f"Latency quantiles with {level} intervals over units (fixed horizon)",
        ),
    ]
    sections = [
        Section("goals", "Goal metrics", goals),
        Section("guardrails", "Guardrails", tuple(guardrails)),
    ]
    labels = _labels_table(report)
    if report.descriptive or labels.rows:
        blocks: list[Block] = [Paragraph("Model outputs, described: they take no part in the decision.")]
        if report.descriptive:
            blocks.append(_comparison_table(report.descriptive, alpha))
        if labels.rows:
            blocks.append(labels)
        sections.append(Section("descriptive", "Descriptive metrics", tuple(blocks)))
    return tuple(sections)


def _labels_table(report: Report) -> Table:
    rows = tuple(
        (
            output,
            arm.name,
            ", ".join(f"{label} {text.share(share)}" for label, share in sorted(shares.items())),
        )
        for arm in report.arms
        for output, shares in sorted(arm.labels.items())
    )
    return Table(("output", "arm", "predicted classes"), rows, "Share of each predicted class")
