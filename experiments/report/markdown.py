"""The report as Markdown (GitHub tables): the HTML page's sections; figures are named, not drawn."""

from __future__ import annotations

from experiments.report.blocks import Block, Bullets, Figure, Paragraph, Table
from experiments.report.document import layout, title_of
from experiments.report.model import Report


def _cell(value: str) -> str:
    """A table cell on one line, with pipes escaped so they do not split the cell."""
    return value.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _table(table: Table) -> list[str]:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(_cell(c) for c in table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in table.rows]
    if not table.rows:
        lines.append("| " + " | ".join("—" for _ in table.columns) + " |")
    return lines


def _block(block: Block) -> list[str]:
    if isinstance(block, Paragraph):
        if block.tone:
            return [f"> **{block.text}**"]
        return [block.text]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items] or ["- none"]
    if isinstance(block, Table):
        return _table(block)
    note = f" {block.note}." if block.note else ""
    return [
        f"- **{block.caption}**: drawn in the HTML report; its data are in the JSON report's `plots`.{note}"
    ]


def _section_body(blocks: tuple[Block, ...]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        rendered = _block(block)
        # Consecutive figure lines form one list; every other block is its own paragraph.
        if lines and not (isinstance(block, Figure) and lines[-1].startswith("- **")):
            lines.append("")
        lines += rendered
    return lines


def render_markdown(report: Report) -> str:
    lines = [f"# {title_of(report)}", ""]
    for section in layout(report):
        lines += [f"## {section.title}", ""]
        lines += _section_body(section.blocks)
        lines.append("")
    return "\n".join(lines)
