"""The report as one self-contained HTML page: inline CSS, plots as inline SVG, no scripts, no links out.

The file opens offline in any browser and can be mailed or attached to a ticket as it is.
"""

from __future__ import annotations

from html import escape

from experiments.report import text
from experiments.report.blocks import Block, Bullets, Figure, Paragraph, Table
from experiments.report.document import layout, title_of
from experiments.report.model import Report
from experiments.report.plots import plot_svgs

_CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #1d1d1f; background: #fafafa; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 24px 48px; background: #fff; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #e3e3e3; }
.meta { color: #666; margin: 0 0 16px; }
.banner { padding: 10px 14px; border-radius: 6px; border-left: 6px solid #999; background: #f3f3f3;
          font-weight: 600; }
.banner.ok { border-color: #2e7d32; background: #edf7ee; }
.banner.note { border-color: #1565c0; background: #eef4fb; }
.banner.warning { border-color: #ef6c00; background: #fff4e5; }
.banner.blocking { border-color: #c62828; background: #fdecea; }
.scroll { overflow-x: auto; margin: 8px 0 14px; }
table { border-collapse: collapse; font-size: 13px; max-width: 100%; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
th, td { border-bottom: 1px solid #e6e6e6; padding: 4px 10px 4px 0; text-align: left; vertical-align: top; }
th { color: #555; font-weight: 600; }
td { font-variant-numeric: tabular-nums; white-space: nowrap; }
td.text { white-space: normal; min-width: 12em; overflow-wrap: anywhere; }
.level-ok { color: #2e7d32; } .level-note { color: #1565c0; }
.level-warning { color: #ef6c00; } .level-blocking { color: #c62828; font-weight: 600; }
figure { margin: 12px 0 24px; }
figure svg { max-width: 100%; height: auto; display: block; }
figcaption { color: #333; font-weight: 600; margin-top: 4px; }
.note { color: #8a5a00; margin: 2px 0 0; }
"""

_LEVELS = frozenset({"ok", "note", "warning", "blocking"})
# Cells longer than this (reasons, details, references, long intervals) wrap; shorter ones (numbers,
# most intervals) stay on one line so a column reads straight down. At 24 a comparison table of
# eleven columns fits the 1,180 px page (a 1,280 px screen less its scroll bar and margins).
_LONG_CELL = 24


def _table(table: Table) -> str:
    caption = f"<caption>{escape(table.caption)}</caption>" if table.caption else ""
    head = "".join(f"<th>{escape(column)}</th>" for column in table.columns)
    status_column = table.columns.index("status") if "status" in table.columns else -1
    rows = []
    for row in table.rows:
        cells = []
        for i, value in enumerate(row):
            if i == status_column and value in _LEVELS:
                css = f' class="level-{value}"'
            else:
                css = ' class="text"' if len(value) > _LONG_CELL else ""
            cells.append(f"<td{css}>{escape(value)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        rows.append(f'<tr><td colspan="{len(table.columns)}">{text.DASH}</td></tr>')
    return (
        f'<div class="scroll"><table>{caption}<thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _block(block: Block, svgs: dict[str, str]) -> str:
    if isinstance(block, Paragraph):
        css = f' class="banner {block.tone}"' if block.tone else ""
        return f"<p{css}>{escape(block.text)}</p>"
    if isinstance(block, Bullets):
        items = block.items or ("none",)
        return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in items) + "</ul>"
    if isinstance(block, Table):
        return _table(block)
    return _figure(block, svgs)


def _figure(figure: Figure, svgs: dict[str, str]) -> str:
    note = f'<p class="note">{escape(figure.note)}</p>' if figure.note else ""
    return (
        f'<figure id="plot-{figure.key}">{svgs[figure.key]}'
        f"<figcaption>{escape(figure.caption)}</figcaption>{note}</figure>"
    )


def render_html(report: Report) -> str:
    svgs = plot_svgs(report.plots, text.level_of(report.header.alpha))
    title = escape(title_of(report))
    meta = escape(
        f"{report.kind} · phase {report.header.phase} · {report.header.state} · generated "
        f"{text.timestamp(report.generated_at)}"
    )
    body = []
    for section in layout(report):
        blocks = "".join(_block(block, svgs) for block in section.blocks)
        body.append(f'<section id="{escape(section.key)}"><h2>{escape(section.title)}</h2>{blocks}</section>')
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_CSS}</style></head>"
        f'<body><main><h1>{title}</h1><p class="meta">{meta}</p>{"".join(body)}</main></body></html>\n'
    )
