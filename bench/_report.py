"""The benchmark's results: per-target outcomes, the readable tables, and the one-line JSON summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from _results import LoadResult

# The concurrency the JSON headline fields describe: a busy service that is not yet saturated. When a
# run does not measure it, the headline falls back to the first concurrency measured.
HEADLINE_CONCURRENCY = 32
# Targets whose headline fields the JSON summary always has (null when not measured), so readers can
# rely on them; other rows (turnout with a filter chain) add their own fields when present.
HEADLINE_TARGETS = ("direct", "turnout", "nginx")
# The narrowest target column of the tables: the longest of the fixed target names.
MIN_TARGET_WIDTH = 8


@dataclass(frozen=True, slots=True)
class Measured:
    """A target measured at one concurrency; CPU is that of the proxy's process group, if any."""

    load: LoadResult
    cpu_us_per_req: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rps": round(self.load.rps, 1),
            "p50_ms": round(self.load.p50_ms, 4),
            "p99_ms": round(self.load.p99_ms, 4),
            "cpu_us_per_req": None if self.cpu_us_per_req is None else round(self.cpu_us_per_req, 2),
            "requests": self.load.requests,
            "errors": self.load.errors,
            "duration_s": round(self.load.duration_s, 3),
        }


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A target with no figure: skipped on purpose (``failed`` false) or broken (``failed`` true)."""

    reason: str
    failed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"error" if self.failed else "skipped": self.reason}


Outcome = Measured | Unavailable
# concurrency -> target name -> outcome, in the order measured.
Runs = Mapping[int, Mapping[str, Outcome]]


@dataclass(frozen=True, slots=True)
class ChainCost:
    """What a filter chain adds to turnout with no filters, at one concurrency (negative: saves)."""

    label: str
    cpu_us_per_req: float | None
    p50_ms: float
    p99_ms: float
    rps_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "target": self.label,
            "cpu_us_per_req": None if self.cpu_us_per_req is None else round(self.cpu_us_per_req, 2),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "rps_ratio": None if self.rps_ratio is None else round(self.rps_ratio, 4),
        }


def chain_cost(outcomes: Mapping[str, Outcome]) -> ChainCost | None:
    """turnout with a chain (``turnout+<chain>``) against turnout alone, when both were measured."""
    base = outcomes.get("turnout")
    label = next((label for label in outcomes if label.startswith("turnout+")), None)
    with_chain = outcomes.get(label) if label is not None else None
    if label is None or not isinstance(base, Measured) or not isinstance(with_chain, Measured):
        return None
    cpu = None
    if with_chain.cpu_us_per_req is not None and base.cpu_us_per_req is not None:
        cpu = with_chain.cpu_us_per_req - base.cpu_us_per_req
    return ChainCost(
        label,
        cpu,
        with_chain.load.p50_ms - base.load.p50_ms,
        with_chain.load.p99_ms - base.load.p99_ms,
        with_chain.load.rps / base.load.rps if base.load.rps > 0 else None,
    )


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"


def _ratios_line(label: str, outcomes: Mapping[str, Outcome]) -> str | None:
    turnout = outcomes.get(label)
    if not isinstance(turnout, Measured):
        return None
    parts = []
    for reference in ("nginx", "direct"):
        other = outcomes.get(reference)
        if isinstance(other, Measured):
            parts.append(
                f"{label}/{reference}: req/s {_ratio(turnout.load.rps, other.load.rps)}, "
                f"p99 {_ratio(turnout.load.p99_ms, other.load.p99_ms)}"
            )
    return "; ".join(parts) if parts else None


def _cost_line(cost: ChainCost) -> str:
    cpu = "n/a" if cost.cpu_us_per_req is None else f"{cost.cpu_us_per_req:+.1f}"
    ratio = "n/a" if cost.rps_ratio is None else f"{cost.rps_ratio:.2f}x"
    return (
        f"{cost.label} vs turnout: CPU µs/req {cpu}, p50 {cost.p50_ms:+.3f} ms, "
        f"p99 {cost.p99_ms:+.3f} ms, req/s {ratio}"
    )


def _one_line(reason: str) -> str:
    """A multi-line reason (often ending in a child's traceback) as its first and last lines."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]}"


def render_tables(runs: Runs, header: Sequence[str]) -> str:
    """One table per concurrency, with the turnout ratios under it, after the ``header`` lines."""
    lines = list(header)
    width = max([MIN_TARGET_WIDTH, *(len(target) for per in runs.values() for target in per)])
    for concurrency, outcomes in runs.items():
        lines += ["", f"concurrency {concurrency}"]
        lines.append(
            f"  {'target':<{width}} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU µs/req':>11} "
            f"{'errors':>7}"
        )
        for target, outcome in outcomes.items():
            if isinstance(outcome, Unavailable):
                label = "failed" if outcome.failed else "skipped"
                lines.append(f"  {target:<{width}} {label}: {_one_line(outcome.reason)}")
                continue
            load = outcome.load
            cpu = "-" if outcome.cpu_us_per_req is None else f"{outcome.cpu_us_per_req:.1f}"
            lines.append(
                f"  {target:<{width}} {load.rps:>10,.0f} {load.p50_ms:>9.3f} {load.p99_ms:>9.3f} "
                f"{cpu:>11} {load.errors:>7}"
            )
        for target in outcomes:
            ratios = _ratios_line(target, outcomes) if target.startswith("turnout") else None
            if ratios is not None:
                lines.append(f"  {ratios}")
        cost = chain_cost(outcomes)
        if cost is not None:
            lines.append(f"  {_cost_line(cost)}")
    return "\n".join(lines)


def headline_concurrency(runs: Runs) -> int | None:
    if HEADLINE_CONCURRENCY in runs:
        return HEADLINE_CONCURRENCY
    return next(iter(runs), None)


def headline_key(target: str) -> str:
    """The JSON field prefix of a target: ``turnout+cache-hit`` -> ``turnout_cache_hit``."""
    return target.replace("+", "_").replace("-", "_")


def summary(runs: Runs, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON summary: headline figures for one concurrency, then ``meta``, then every run, then
    what the filter chain cost at each concurrency (when turnout ran with and without it)."""
    headline = headline_concurrency(runs)
    outcomes: Mapping[str, Outcome] = runs[headline] if headline is not None else {}
    result: dict[str, Any] = {"concurrency": headline}
    for target in dict.fromkeys([*HEADLINE_TARGETS, *outcomes]):
        outcome = outcomes.get(target)
        measured = outcome if isinstance(outcome, Measured) else None
        key = headline_key(target)
        result[f"{key}_rps"] = None if measured is None else round(measured.load.rps, 1)
        result[f"{key}_p99_ms"] = None if measured is None else round(measured.load.p99_ms, 4)
        result[f"{key}_cpu_us_per_req"] = None if measured is None else measured.to_dict()["cpu_us_per_req"]
    result.update(meta)
    result["runs"] = {
        str(concurrency): {target: outcome.to_dict() for target, outcome in per_target.items()}
        for concurrency, per_target in runs.items()
    }
    costs = {str(c): cost.to_dict() for c, per in runs.items() if (cost := chain_cost(per)) is not None}
    if costs:
        result["chain_cost"] = costs
    return result
