"""The project's performance targets, checked against the collected benchmark results.

The targets, as the project states them:
  * turnout/nginx req/s at concurrency 32 >= 0.5;
  * turnout's p99 <= 2x nginx's (checked at every concurrency the proxy section measured);
  * batching at concurrency 64 >= 3x the unbatched req/s, and >= 70% of the in-process ceiling
    (onnxruntime at the batcher's max_batch_size, rows/s);
  * batching adds <= max_queue_delay + 1 ms to p50 at concurrency 1.
The batching targets apply to the compute-bound model the batching benchmark measures (risk-mlp);
the HTTP-bound one beside it (risk v2) is shown for contrast, not held to them.
A target whose figures are missing (a section failed or was not run) is "not measured", never met.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core.config_types import parse_duration

MIN_RPS_RATIO_VS_NGINX = 0.5
RPS_RATIO_CONCURRENCY = 32
MAX_P99_RATIO_VS_NGINX = 2.0
BATCHING_CONCURRENCY = 64
MIN_BATCHING_SPEEDUP = 3.0
MIN_FRACTION_OF_CEILING = 0.7
# The p50 allowance beyond the batcher's own max_queue_delay, at concurrency 1 (a lone request waits
# out the whole delay: anything above delay + 1 ms is the batcher's own overhead).
BATCHING_P50_ALLOWANCE_MS = 1.0

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


@dataclass(frozen=True, slots=True)
class Goal:
    what: str
    measured: str
    target: str
    verdict: str


def _goal(what: str, value: float | None, shown: str, target: str, ok: bool) -> Goal:
    if value is None:
        return Goal(what, "-", target, NOT_MEASURED)
    return Goal(what, shown, target, MET if ok else NOT_MET)


def _result(sections: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    record = sections.get(name)
    result = record.get("result") if isinstance(record, Mapping) else None
    return result if isinstance(result, Mapping) else None


def _proxy_figure(proxy: Mapping[str, Any], concurrency: str, target: str, field: str) -> float | None:
    row = proxy.get("runs", {}).get(concurrency, {}).get(target, {})
    value = row.get(field)
    return float(value) if isinstance(value, int | float) else None


def _proxy_ratio(proxy: Mapping[str, Any], concurrency: str, field: str) -> float | None:
    turnout = _proxy_figure(proxy, concurrency, "turnout", field)
    nginx = _proxy_figure(proxy, concurrency, "nginx", field)
    return turnout / nginx if turnout is not None and nginx else None


def proxy_goals(proxy: Mapping[str, Any] | None) -> list[Goal]:
    proxy = proxy or {}
    c = str(RPS_RATIO_CONCURRENCY)
    rps = _proxy_ratio(proxy, c, "rps")
    goals = [
        _goal(
            f"turnout/nginx req/s at c={c}",
            rps,
            f"{rps:.2f}x" if rps is not None else "",
            f">= {MIN_RPS_RATIO_VS_NGINX:g}x",
            rps is not None and rps >= MIN_RPS_RATIO_VS_NGINX,
        )
    ]
    for concurrency in proxy.get("runs", {}) or (c,):
        p99 = _proxy_ratio(proxy, concurrency, "p99_ms")
        goals.append(
            _goal(
                f"turnout/nginx p99 at c={concurrency}",
                p99,
                f"{p99:.2f}x" if p99 is not None else "",
                f"<= {MAX_P99_RATIO_VS_NGINX:g}x",
                p99 is not None and p99 <= MAX_P99_RATIO_VS_NGINX,
            )
        )
    return goals


def _batching_row(model: Mapping[str, Any], mode: str, concurrency: int) -> Mapping[str, Any] | None:
    for row in model.get("results", []):
        if row.get("mode") == mode and row.get("concurrency") == concurrency:
            return row  # type: ignore[no-any-return]
    return None


def target_model(batching: Mapping[str, Any]) -> Mapping[str, Any]:
    """The model the batching targets apply to: the first compute-bound one measured (batching is
    for models whose compute dominates; through HTTP, no front door nears an HTTP-bound model's
    in-process ceiling)."""
    for model in batching.get("models", []):
        if model.get("bound") == "compute":
            return model  # type: ignore[no-any-return]
    return {}


def batching_figures(model: Mapping[str, Any], concurrency: int) -> tuple[float | None, float | None]:
    """(on/off req/s, on req/s / the in-process ceiling) of one model at ``concurrency``."""
    on, off = _batching_row(model, "on", concurrency), _batching_row(model, "off", concurrency)
    speedup = on["requests_per_s"] / off["requests_per_s"] if on and off and off["requests_per_s"] else None
    ceiling = model.get("ceiling_rows_per_s")
    fraction = on["requests_per_s"] / ceiling if on and ceiling else None
    return speedup, fraction


def batching_goals(batching: Mapping[str, Any] | None) -> list[Goal]:
    batching = batching or {}
    model = target_model(batching)
    name = model.get("model", "compute-bound model")
    c = BATCHING_CONCURRENCY
    speedup, fraction = batching_figures(model, c)
    on1, off1 = _batching_row(model, "on", 1), _batching_row(model, "off", 1)
    added = on1["p50_ms"] - off1["p50_ms"] if on1 and off1 else None
    delay = batching.get("batcher", {}).get("max_queue_delay")
    allowed = parse_duration(delay) * 1000 + BATCHING_P50_ALLOWANCE_MS if delay is not None else None
    return [
        _goal(
            f"{name}: batching on/off req/s at c={c}",
            speedup,
            f"{speedup:.2f}x" if speedup is not None else "",
            f">= {MIN_BATCHING_SPEEDUP:g}x",
            speedup is not None and speedup >= MIN_BATCHING_SPEEDUP,
        ),
        _goal(
            f"{name}: batching on req/s / in-process ceiling at c={c}",
            fraction,
            f"{fraction:.1%}" if fraction is not None else "",
            f">= {MIN_FRACTION_OF_CEILING:.0%}",
            fraction is not None and fraction >= MIN_FRACTION_OF_CEILING,
        ),
        _goal(
            f"{name}: p50 added by batching at c=1",
            None if allowed is None else added,
            f"{added:+.2f} ms" if added is not None else "",
            f"<= max_queue_delay + {BATCHING_P50_ALLOWANCE_MS:g} ms"
            + (f" ({allowed:g} ms)" if allowed is not None else ""),
            added is not None and allowed is not None and added <= allowed,
        ),
    ]


def check_goals(sections: Mapping[str, Any]) -> list[Goal]:
    """Every target, from the sections' results (a section's record holds its JSON as ``result``)."""
    return proxy_goals(_result(sections, "proxy")) + batching_goals(_result(sections, "batching"))
