"""The benchmark's results: per-target outcomes, the readable tables, and the one-line JSON summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from _results import LoadResult

# The concurrency the JSON headline fields describe: a busy service that is not yet saturated. When a
# run does not measure it, the headline falls back to the first concurrency measured.
HEADLINE_CONCURRENCY = 32


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


def _ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}x" if denominator > 0 else "n/a"


def _ratios_line(outcomes: Mapping[str, Outcome]) -> str | None:
    turnout = outcomes.get("turnout")
    if not isinstance(turnout, Measured):
        return None
    parts = []
    nginx = outcomes.get("nginx")
    if isinstance(nginx, Measured):
        parts.append(
            f"turnout/nginx: req/s {_ratio(turnout.load.rps, nginx.load.rps)}, "
            f"p99 {_ratio(turnout.load.p99_ms, nginx.load.p99_ms)}"
        )
    direct = outcomes.get("direct")
    if isinstance(direct, Measured):
        parts.append(
            f"turnout/direct: req/s {_ratio(turnout.load.rps, direct.load.rps)}, "
            f"p99 {_ratio(turnout.load.p99_ms, direct.load.p99_ms)}"
        )
    return "; ".join(parts) if parts else None


def _one_line(reason: str) -> str:
    """A multi-line reason (often ending in a child's traceback) as its first and last lines."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else ""
    return f"{lines[0]} ... {lines[-1]}"


def render_tables(runs: Runs, header: Sequence[str]) -> str:
    """One table per concurrency, with the turnout ratios under it, after the ``header`` lines."""
    lines = list(header)
    for concurrency, outcomes in runs.items():
        lines += ["", f"concurrency {concurrency}"]
        lines.append(
            f"  {'target':<8} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'CPU µs/req':>11} {'errors':>7}"
        )
        for target, outcome in outcomes.items():
            if isinstance(outcome, Unavailable):
                label = "failed" if outcome.failed else "skipped"
                lines.append(f"  {target:<8} {label}: {_one_line(outcome.reason)}")
                continue
            load = outcome.load
            cpu = "-" if outcome.cpu_us_per_req is None else f"{outcome.cpu_us_per_req:.1f}"
            lines.append(
                f"  {target:<8} {load.rps:>10,.0f} {load.p50_ms:>9.3f} {load.p99_ms:>9.3f} {cpu:>11} "
                f"{load.errors:>7}"
            )
        ratios = _ratios_line(outcomes)
        if ratios is not None:
            lines.append(f"  {ratios}")
    return "\n".join(lines)


def headline_concurrency(runs: Runs) -> int | None:
    if HEADLINE_CONCURRENCY in runs:
        return HEADLINE_CONCURRENCY
    return next(iter(runs), None)


def summary(runs: Runs, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON summary: headline figures for one concurrency, then ``meta``, then every run."""
    headline = headline_concurrency(runs)
    outcomes: Mapping[str, Outcome] = runs[headline] if headline is not None else {}
    result: dict[str, Any] = {"concurrency": headline}
    for target in ("direct", "turnout", "nginx"):
        outcome = outcomes.get(target)
        measured = outcome if isinstance(outcome, Measured) else None
        result[f"{target}_rps"] = None if measured is None else round(measured.load.rps, 1)
        result[f"{target}_p99_ms"] = None if measured is None else round(measured.load.p99_ms, 4)
        result[f"{target}_cpu_us_per_req"] = (
            None if measured is None else measured.to_dict()["cpu_us_per_req"]
        )
    result.update(meta)
    result["runs"] = {
        str(concurrency): {target: outcome.to_dict() for target, outcome in per_target.items()}
        for concurrency, per_target in runs.items()
    }
    return result
