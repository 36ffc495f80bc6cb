"""`render(report, fmt)`: the report as JSON, Markdown or one self-contained HTML page."""

from __future__ import annotations

from typing import Literal, get_args

import orjson

from experiments.report.markdown import render_markdown
from experiments.report.model import Report

ReportFormat = Literal["json", "md", "html"]
FORMATS: tuple[str, ...] = get_args(ReportFormat)


def render_json(report: Report) -> str:
    """One JSON object; NaN and infinities (missing values, unbounded interval sides) become null."""
    return orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2).decode()


def render(report: Report, fmt: str) -> str:
    """The report in `fmt`: "json", "md" or "html"."""
    if fmt == "json":
        return render_json(report)
    if fmt == "md":
        return render_markdown(report)
    if fmt == "html":
        # Imported here: the HTML page needs matplotlib, which JSON and Markdown callers (the admin
        # API, scripts) should not pay for in import time and memory.
        from experiments.report.html_page import render_html

        return render_html(report)
    raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
