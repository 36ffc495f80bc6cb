"""The report's plots as inline SVG, drawn with matplotlib without pyplot (no GUI, no global figures).

Each plot always renders: with too little data it shows the axes and says why they are empty, so a
reader sees that the plot exists and what it waits for. Text stays text in the SVG (no embedded font
outlines), which keeps each plot a few tens of kilobytes and needs no font files.
"""

from __future__ import annotations

import html
import io
import math
import re
from collections.abc import Callable, Sequence

import numpy as np

from experiments.report import text
from experiments.report.model import ExposureSeries, LatencyCdf, LiftSeries, PlotData
from gateway.core.extras import MissingExtra

try:
    import matplotlib
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogFormatter
except ImportError as missing:  # the plots come with the `reports` extra
    raise MissingExtra("reports", "the report's plots", ("matplotlib",)) from missing

# 9 x 3.6 inches at the SVG's 72 points per inch: about 650 x 260 px, the width of the report's
# column, tall enough to read a confidence band.
FIGURE_SIZE = (9.0, 3.6)
# Matplotlib's default would be 10 pt; the plots sit next to 14 px table text.
FONT_SIZE = 9
# Elapsed time switches unit above these spans (seconds): two minutes, two hours, two days.
_TIME_UNITS = ((120.0, 1.0, "s"), (7_200.0, 60.0, "min"), (172_800.0, 3_600.0, "h"))
_DAY = 86_400.0
_ID = re.compile(r'\bid="([^"]+)"')
_URL_REF = re.compile(r"url\(#([^)]+)\)")
_HREF_REF = re.compile(r'href="#([^"]+)"')


def _elapsed(times: Sequence[float], origin: float) -> tuple[np.ndarray, str]:
    values = np.asarray(times, dtype=np.float64) - origin
    span = float(values.max()) if values.size else 0.0
    for limit, seconds, unit in _TIME_UNITS:
        if span < limit:
            return values / seconds, unit
    return values / _DAY, "days"


def _say(axes: Axes, note: str) -> None:
    if note:
        axes.text(0.5, 0.5, note, transform=axes.transAxes, ha="center", va="center", wrap=True,
                  color="#666666", bbox={"facecolor": "white", "edgecolor": "#cccccc"})  # fmt: skip


def _legend(axes: Axes) -> None:
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", frameon=False)


def _own_ids(svg: str, prefix: str) -> str:
    """Prefix every element id and every reference to one: matplotlib numbers ids per figure
    ("axes_1", "xtick_1"), so two plots inlined in one page would otherwise share them."""
    svg = _ID.sub(rf'id="{prefix}-\1"', svg)
    svg = _URL_REF.sub(rf"url(#{prefix}-\1)", svg)
    return _HREF_REF.sub(rf'href="#{prefix}-\1"', svg)


def _svg(figure: Figure, key: str, label: str) -> str:
    """The figure as an <svg> element to inline (no XML prolog), labelled for screen readers."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = _own_ids(svg[svg.index("<svg") :], f"plot-{key}")
    return svg.replace("<svg", f'<svg role="img" aria-label="{html.escape(label)}"', 1)


def _figure() -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGURE_SIZE, layout="constrained")
    axes = figure.add_subplot()
    axes.grid(True, color="#e5e5e5")
    return figure, axes


def _origin(times: Sequence[Sequence[float]]) -> float:
    firsts = [series[0] for series in times if series]
    return min(firsts) if firsts else math.nan


def lift_svg(lift: Sequence[LiftSeries], metric: str | None, note: str, level: str) -> str:
    figure, axes = _figure()
    factor, unit = text.scale_of(metric or "")
    origin = _origin([series.time for series in lift])
    time_unit = "s"
    for series in lift:
        if not series.time:
            continue
        x, time_unit = _elapsed(series.time, origin)
        low = np.asarray(series.cs_low) * factor
        high = np.asarray(series.cs_high) * factor
        line = axes.plot(
            x, np.asarray(series.difference) * factor, label=f"{series.treatment} - {series.control}"
        )
        bounded = np.isfinite(low) & np.isfinite(high)
        if bounded.any():
            axes.fill_between(x[bounded], low[bounded], high[bounded], color=line[0].get_color(), alpha=0.2,
                              label=f"{level} confidence sequence")  # fmt: skip
    axes.axhline(0.0, color="#444444", linewidth=0.8)
    axes.set_xlabel(f"time since {text.timestamp(origin)} ({time_unit})" if math.isfinite(origin) else "time")
    axes.set_ylabel(f"difference in {metric or 'metric'}" + (f" ({unit.strip()})" if unit else ""))
    _legend(axes)
    _say(axes, note)
    return _svg(figure, "lift", f"cumulative difference in {metric or 'the metric'} over time")


def exposures_svg(
    series: Sequence[ExposureSeries], phase_starts: Sequence[tuple[int, float]], note: str
) -> str:
    figure, axes = _figure()
    origin = _origin([s.time for s in series])
    time_unit = "s"
    for arm in series:
        x, time_unit = _elapsed(arm.time, origin)
        axes.step(x, arm.exposures, where="post", label=arm.arm)
    if math.isfinite(origin):
        for phase, start in phase_starts:
            x, _ = _elapsed([start], origin)
            axes.axvline(float(x[0]), color="#888888", linestyle="--", linewidth=0.8)
            axes.annotate(f"phase {phase}", (float(x[0]), 1.0), xycoords=("data", "axes fraction"),
                          xytext=(3, -12), textcoords="offset points", color="#666666")  # fmt: skip
    axes.set_xlabel(f"time since {text.timestamp(origin)} ({time_unit})" if math.isfinite(origin) else "time")
    axes.set_ylabel("analysed exposures (cumulative)")
    _legend(axes)
    _say(axes, note)
    return _svg(figure, "exposures", "analysed exposures per arm over time")


def latency_svg(cdfs: Sequence[LatencyCdf], note: str) -> str:
    figure, axes = _figure()
    drawn = False
    for cdf in cdfs:
        if not cdf.latency_s:
            continue
        milliseconds = np.asarray(cdf.latency_s) * 1000.0
        axes.step(milliseconds, cdf.cumulative, where="post", label=f"{cdf.arm} ({cdf.requests:,} requests)")
        drawn = True
    if drawn:
        axes.set_xscale("log")
        # Plain milliseconds (20, 50, 100) rather than the log axis's default powers of ten; the
        # formatter labels only some minor ticks when the axis spans few decades, so labels never crowd.
        axes.xaxis.set_major_formatter(LogFormatter())
        axes.xaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False))
    axes.set_ylim(0.0, 1.02)
    axes.set_xlabel("latency (ms)")
    axes.set_ylabel("share of requests at or below")
    _legend(axes)
    _say(axes, note)
    return _svg(figure, "latency", "latency CDF per arm")


def plot_svgs(plots: PlotData, level: str) -> dict[str, str]:
    """Every plot of the report as an SVG string, by figure key."""
    drawers: dict[str, Callable[[], str]] = {
        "lift": lambda: lift_svg(plots.lift, plots.lift_metric, plots.notes.get("lift", ""), level),
        "exposures": lambda: exposures_svg(
            plots.exposures, plots.phase_starts, plots.notes.get("exposures", "")
        ),
        "latency": lambda: latency_svg(plots.latency_cdfs, plots.notes.get("latency", "")),
    }
    svgs = {}
    for key, draw in drawers.items():
        # Text stays text (no font outlines to embed); a fixed hash salt instead of a random one makes
        # the same report render to the same bytes.
        with matplotlib.rc_context(
            {"svg.fonttype": "none", "svg.hashsalt": f"turnout-{key}", "font.size": FONT_SIZE}
        ):
            svgs[key] = draw()
    return svgs
