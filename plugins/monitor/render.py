"""A model's monitoring report (the JSON of `GET /admin/monitoring/MODEL`) as Markdown or HTML.

Pure functions of the report: a table of features by drift (worst first), the outputs, and, in HTML,
each feature's histogram, reference against current, as inline SVG (no plotting library needed).
"""

from __future__ import annotations

import html
from typing import Any, Final

# Drawing size of one feature's histogram, in CSS pixels: small enough for a grid of 30.
_WIDTH: Final = 240
_HEIGHT: Final = 80
_STATE_ORDER: Final = {"alert": 0, "warn": 1, "ok": 2}
_COLOURS: Final = {"reference": "#9aa5b1", "current": "#2b6cb0"}


def _ranked(report: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(
        report.get("features", []),
        key=lambda feature: (_STATE_ORDER.get(feature["state"], 3), -(feature.get("psi") or 0.0)),
    )


def _label(feature: dict[str, Any]) -> str:
    return str(feature.get("name", f"feature {feature['index']}"))


def _number(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Model {report['model']}", ""]
    reference = report.get("reference")
    lines.append(
        f"Reference: {reference['source']} ({reference['rows']} rows)" if reference else "Reference: none"
    )
    lines += [f"Rows sampled: {report.get('rows', 0)}", ""]
    for error in report.get("errors", []):
        lines.append(f"> {error}")
    lines += ["", "| feature | state | PSI | KS | JS | samples | NaN rate |", "|---|---|---|---|---|---|---|"]
    for feature in _ranked(report):
        lines.append(
            f"| {_label(feature)} | {feature['state']} | {_number(feature.get('psi'))} | "
            f"{_number(feature.get('ks'))} | {_number(feature.get('js'))} | {feature.get('samples', 0)} | "
            f"{_number(feature.get('nan_rate'))} |"
        )
    lines += ["", "## Outputs", ""]
    for name, output in sorted(report.get("outputs", {}).items()):
        details = ", ".join(f"{key} {_summary(value)}" for key, value in output.items() if key != "kind")
        lines.append(f"- {name} ({output.get('kind', '')}): {details}")
    return "\n".join(lines) + "\n"


def _summary(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_summary(inner)}" for key, inner in value.items()) + "}"
    return str(value)


def page(report: dict[str, Any]) -> str:
    model = html.escape(str(report["model"]))
    cards = "\n".join(_card(feature) for feature in _ranked(report))
    errors = "".join(f"<p class=error>{html.escape(error)}</p>" for error in report.get("errors", []))
    table = html.escape(markdown(report))
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>turnout monitoring: {model}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}} .grid{{display:flex;flex-wrap:wrap;gap:1em}}
.card{{border:1px solid #ddd;padding:.5em}} .alert{{border-color:#c53030}} .warn{{border-color:#d69e2e}}
.error{{color:#c53030}} pre{{background:#f7f7f7;padding:1em}}</style></head>
<body><h1>Model {model}</h1>{errors}
<p>Histograms: <span style="color:{_COLOURS["reference"]}">reference</span> against
<span style="color:{_COLOURS["current"]}">current window</span>, by the reference's quantile bins.</p>
<div class=grid>{cards}</div>
<h2>Summary</h2><pre>{table}</pre></body></html>
"""


def _card(feature: dict[str, Any]) -> str:
    title = html.escape(_label(feature))
    state = html.escape(str(feature["state"]))
    return (
        f"<div class='card {state}'><b>{title}</b> {state}, PSI {_number(feature.get('psi'))}<br>"
        f"{_bars(feature.get('histogram'))}</div>"
    )


def _bars(histogram: dict[str, Any] | None) -> str:
    if not histogram:
        return "<i>no reference</i>"
    reference, current = histogram["reference"], histogram["current"]
    tallest = max([*reference, *current, 1e-9])
    slot = _WIDTH / max(len(reference), 1)
    bars = []
    for index, pair in enumerate(zip(reference, current, strict=True)):
        for offset, (which, share) in enumerate(zip(("reference", "current"), pair, strict=True)):
            height = share / tallest * (_HEIGHT - 2)
            x = index * slot + offset * slot / 2
            bars.append(
                f"<rect x='{x:.1f}' y='{_HEIGHT - height:.1f}' width='{slot / 2 - 1:.1f}' "
                f"height='{height:.1f}' fill='{_COLOURS[which]}'/>"
            )
    return f"<svg width='{_WIDTH}' height='{_HEIGHT}' role=img>{''.join(bars)}</svg>"
