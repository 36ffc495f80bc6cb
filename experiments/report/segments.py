"""The report's "Effect by segment" section: each goal per segment of the configured dimensions."""

from __future__ import annotations

from experiments.report import text
from experiments.report.blocks import Block, Bullets, Paragraph, Section, Table
from experiments.report.model import Report


def _p(value: float) -> str:
    shown = text.p_value(value)
    return shown if shown.startswith("<") else f"= {shown}"


def has_segments(report: Report) -> bool:
    return any(goal.segments for goal in report.goals)


def segments_section(report: Report) -> Section:
    level = text.level_of(report.header.alpha)
    rows = tuple(
        (
            goal.metric,
            goal.treatment,
            cell.dimension,
            cell.segment,
            f"{cell.control_units:,} / {cell.treatment_units:,}",
            text.metric_value(goal.metric, cell.difference),
            text.interval(goal.metric, cell.ci_low, cell.ci_high),
            text.p_value(cell.p_value_adjusted) if cell.tested else "too few units",
            ("differs" if cell.significant else "none") if cell.tested else "not tested",
        )
        for goal in report.goals
        for cell in goal.segments
    )
    columns = (
        "metric", "arm", "dimension", "segment", "units (control / arm)", "difference", f"{level} CI",
        "p (Holm)", "effect",
    )  # fmt: skip
    lead = Paragraph(
        "Each goal within the segments of the recorded dimensions (a unit in the segment of its first "
        "exposure), fixed-horizon, with Holm's adjustment across every segment of the metric. Segments "
        "with fewer than 100 units in an arm are shown, not tested. Descriptive; the verdict is taken "
        "on everyone."
    )
    spread = tuple(
        f"{goal.metric} ({goal.treatment}) by {item.dimension}: Cochran's Q = {item.q:.3g} on "
        f"{item.degrees_of_freedom} degrees of freedom, p {_p(item.p_value)}"
        for goal in report.goals
        for item in goal.heterogeneity
    )
    blocks: tuple[Block, ...] = (lead, Table(columns, rows))
    if spread:
        blocks += (Paragraph("Does the effect differ between segments?"), Bullets(spread))
    return Section("segments", "Effect by segment", blocks)
