"""Experiment reports for analysts: one report model, rendered as JSON, Markdown or HTML.

    report = await build_report(name, config, split, store, now=time.time())
    render(report, "json" | "md" | "html")

`build_report` reads the store once (sufficient statistics, raw events, controller decisions) and
builds a frozen `Report` around the experiment's status (`experiments.analysis.status_of`); `render`
writes it out. The HTML page is self-contained (inline CSS and SVG plots, no scripts), so it opens
offline. The raw events behind a report are exported with `experiments.store.export_events` (CSV,
or Parquet when pyarrow is installed).

Modules: `model` (the dataclasses); `build` (the builder) with `header`, `health`, `latency`,
`series` (time series from the raw events, which `experiments.analysis_events` reads), `timeline`
and `methods`;
`document` and `metric_sections` (the layout every text format shares, in the `blocks` of `blocks`),
`text` (number formats), `markdown`, `html_page` with `plots`, and `render`.
"""

from experiments.report.build import build_report
from experiments.report.model import Report
from experiments.report.render import FORMATS, ReportFormat, render, render_json

__all__ = ["FORMATS", "Report", "ReportFormat", "build_report", "render", "render_json"]
