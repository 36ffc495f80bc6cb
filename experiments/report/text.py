"""Numbers as a reader wants them: in the metric's own unit, missing values as a dash.

Error rates read as percents, latencies in milliseconds, everything else with four significant
digits. Missing numbers (NaN) print as a dash and unbounded interval sides as infinity signs.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

DASH = "—"
# Below this a p-value prints as "< 0.0001": more digits only suggest a precision the tails of the
# normal approximation do not have.
SMALLEST_P_SHOWN = 1e-4


def _finite(value: float | int | None) -> bool:
    return value is not None and math.isfinite(value)


def number(value: float | int | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "-∞"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}"


def share(value: float | None) -> str:
    return f"{value:.1%}" if _finite(value) and value is not None else DASH


def p_value(value: float | None) -> str:
    if not _finite(value) or value is None:
        return DASH
    return f"< {SMALLEST_P_SHOWN:g}" if value < SMALLEST_P_SHOWN else f"{value:.3g}"


def p_clause(value: float | None) -> str:
    """ "p = 0.03" or "p < 0.0001", for running text."""
    shown = p_value(value)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def timestamp(value: float | None) -> str:
    if not _finite(value) or value is None:
        return DASH
    return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def scale_of(metric: str) -> tuple[float, str]:
    """(factor, unit suffix) a metric's values are shown in."""
    if metric == "error_rate" or metric == "shadow_disagreement":
        return 100.0, " %"
    if metric == "latency" or metric.startswith("latency_p"):
        return 1000.0, " ms"
    return 1.0, ""


def metric_value(metric: str, value: float | None) -> str:
    if not _finite(value) or value is None:
        return number(value)
    factor, unit = scale_of(metric)
    return number(value * factor) + unit


def interval(metric: str, low: float | None, high: float | None) -> str:
    """[low, high] in the metric's unit; unbounded sides as infinities."""
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return DASH
    if math.isinf(low) and math.isinf(high):
        return "unbounded"
    factor, unit = scale_of(metric)
    left = number(low * factor) if math.isfinite(low) else number(low)
    right = number(high * factor) if math.isfinite(high) else number(high)
    return f"[{left}, {right}]{unit}"


def relative(value: float | None) -> str:
    return f"{value:+.2%}" if _finite(value) and value is not None else DASH


def relative_interval(low: float | None, high: float | None) -> str:
    if not (_finite(low) and _finite(high)) or low is None or high is None:
        return DASH
    return f"[{low:+.2%}, {high:+.2%}]"


def level_of(alpha: float) -> str:
    """The confidence level of intervals at `alpha`, e.g. "95 %"."""
    return f"{(1.0 - alpha) * 100.0:.4g} %"
