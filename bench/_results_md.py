"""RESULTS.md from one run of the suite: the machine, the date, the commands, the figures, the targets.

The input is the record `run_all.py` collects (and can save with --save-json): the sections' own
JSON results, untouched, plus what the suite knows about the run. Rendering is a pure function of
that record, so a saved run can be rendered again without measuring anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from _goals import BATCHING_CONCURRENCY, batching_figures, check_goals
from _suite import SECTIONS


def _cell(value: Any) -> str:
    """A table cell: one line, with the characters that would break a Markdown table escaped."""
    text = " ".join(str(value).split())
    return text.replace("|", "\\|")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_cell(value) for value in row) + " |" for row in rows]
    return lines


def _num(value: Any, digits: int = 0) -> str:
    if not isinstance(value, int | float):
        return "-"
    return f"{value:,.{digits}f}"


def _signed(value: Any, digits: int) -> str:
    return f"{value:+.{digits}f}" if isinstance(value, int | float) else "-"


def _first_line(reason: str) -> str:
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    return lines[0] if lines else ""


def _proxy_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for concurrency, targets in result.get("runs", {}).items():
        for target, figures in targets.items():
            if "rps" not in figures:
                state = "failed" if "error" in figures else "skipped"
                reason = _first_line(str(figures.get("error") or figures.get("skipped") or ""))
                rows.append([concurrency, target, f"{state}: {reason}", "-", "-", "-", "-"])
                continue
            rows.append(
                [
                    concurrency,
                    target,
                    _num(figures["rps"]),
                    _num(figures["p50_ms"], 3),
                    _num(figures["p99_ms"], 3),
                    _num(figures["cpu_us_per_req"], 1),
                    figures["errors"],
                ]
            )
    return rows


def _ratio_lines(result: Mapping[str, Any]) -> list[str]:
    lines = []
    for concurrency, targets in result.get("runs", {}).items():
        for target, figures in targets.items():
            if not target.startswith("turnout") or "rps" not in figures:
                continue
            for reference in ("nginx", "direct"):
                other = targets.get(reference, {})
                if other.get("rps") and other.get("p99_ms"):
                    rps = figures["rps"] / other["rps"]
                    p99 = figures["p99_ms"] / other["p99_ms"]
                    lines.append(f"- c={concurrency}: {target}/{reference}: req/s {rps:.2f}x, p99 {p99:.2f}x")
    return lines


def _proxy_section(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Load generator {result.get('loadgen')} (closed loop, keep-alive); upstream: "
        f"{result.get('upstream')}; pinning: {result.get('pinning')}; each run "
        f"{result.get('warmup_s')} s warm-up (discarded), then {result.get('duration_s')} s measured. "
        "CPU µs/req: the proxy's whole process group, user+system CPU time / requests.",
        "",
        f"turnout's filter chain: **{result.get('chain', 'none')}**: {result.get('chain_description', '')}",
        "",
        f"Requests, the same to every row: {result.get('requests', 'GET /')}.",
        "",
    ]
    headers = ("c", "target", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "errors")
    lines += _table(headers, _proxy_rows(result))
    ratios = _ratio_lines(result)
    if ratios:
        lines += ["", *ratios]
    costs = result.get("chain_cost")
    if costs:
        lines += ["", "What the chain adds to turnout with no filters (negative: it saves):", ""]
        lines += _table(
            ("c", "target", "CPU µs/req", "p50 ms", "p99 ms", "req/s ratio"),
            [
                [
                    c,
                    cost["target"],
                    _signed(cost["cpu_us_per_req"], 1),
                    _signed(cost["p50_ms"], 3),
                    _signed(cost["p99_ms"], 3),
                    f"{cost['rps_ratio']:.2f}x" if cost.get("rps_ratio") is not None else "-",
                ]
                for c, cost in costs.items()
            ],
        )
    return lines


def _batching_section(result: Mapping[str, Any]) -> list[str]:
    batcher = result.get("batcher", {})
    size = batcher.get("max_batch_size")
    lines = [
        f"One worker and one turnout gateway, whose two routes to it differ only by the `batching` filter "
        f"(max_batch_size {size}, max_queue_delay {batcher.get('max_queue_delay')}); load generator "
        f"{result.get('loadgen')} (closed loop, keep-alive, one-row OIP v2 JSON requests); "
        f"{result.get('cpus')} CPUs; pinning: {result.get('pinning')}; each run "
        f"{result.get('warmup_s')} s warm-up (discarded), then {result.get('duration_s')} s measured"
        + _rounds_note(result)
        + ". Upstream calls/s, rows/call and model ms/call: the worker's batch size and inference time "
        "histograms over the measured window; wait ms: the gateway's mean batch queue delay.",
    ]
    headers = (
        "batching",
        "c",
        "req/s",
        "p50 ms",
        "p99 ms",
        "upstream calls/s",
        "rows/call",
        "model ms/call",
        "wait ms",
        "errors",
    )
    for model in result.get("models", []):
        compute = model.get("bound") == "compute"
        what = (
            "compute-bound: the targets apply"
            if compute
            else "HTTP-bound: about a microsecond of compute a row, so no HTTP front door nears its "
            "in-process ceiling; shown for contrast, not a target"
        )
        lines += ["", f"**{model.get('model')}** ({what})", ""]
        rows = [
            [
                r["mode"],
                r["concurrency"],
                _num(r["requests_per_s"]),
                _num(r["p50_ms"], 2),
                _num(r["p99_ms"], 2),
                _num(r["upstream_calls_per_s"]),
                _num(r["mean_batch_rows"], 1),
                _num(r.get("model_ms_per_call"), 3),
                _num(r.get("wait_ms"), 3),
                r["errors"],
            ]
            for r in model.get("results", [])
        ]
        lines += _table(headers, rows)
        if any(r["mode"] == "on, no delay" for r in model.get("results", [])):
            lines += [
                "",
                "*on, no delay*: the same filter with max_queue_delay 0, at c=1 only: what the batching "
                "machinery itself adds to a request, apart from the wait for others.",
            ]
        if any(r["mode"] == "off, idle" for r in model.get("results", [])):
            lines += [
                "",
                "*off, idle*: unbatched, the caller pausing max_queue_delay before each request, at c=1 "
                "only: the machine idles as long as during a batched request's wait, without the batcher.",
            ]
        lines += _lone_breakdown(model)
        ceiling = _num(model.get("ceiling_rows_per_s"))
        speedup, fraction = batching_figures(model, BATCHING_CONCURRENCY)
        figures = f"Ceiling: onnxruntime in process at batch {size}: {ceiling} rows/s."
        if speedup is not None and fraction is not None:
            figures += (
                f" At c={BATCHING_CONCURRENCY}: batching on/off {speedup:.2f}x; on / ceiling "
                f"{fraction:.1%}{'' if compute else ' (HTTP-bound)'}."
            )
        lines += ["", figures]
    return lines


def _rounds_note(result: Mapping[str, Any]) -> str:
    rounds = result.get("rounds_at_c1")
    if not isinstance(rounds, int) or rounds < 2:
        return ""
    return f"; at c=1, each row is the median of {rounds} interleaved rounds of its modes"


def _lone_breakdown(model: Mapping[str, Any]) -> list[str]:
    """At c=1: what batching adds to p50, and how much of it idling alone and the machinery explain."""
    p50 = {r["mode"]: r["p50_ms"] for r in model.get("results", []) if r["concurrency"] == 1}
    if "on" not in p50 or "off" not in p50:
        return []
    text = f"At c=1, batching adds {p50['on'] - p50['off']:+.2f} ms to p50 (on - off)"
    parts = []
    if "off, idle" in p50:
        parts.append(
            f"idling as long without batching costs {p50['off, idle'] - p50['off']:+.2f} ms (off, idle - off)"
        )
    if "on, no delay" in p50:
        parts.append(
            f"the machinery without the wait {p50['on, no delay'] - p50['off']:+.2f} ms (on, no delay - off)"
        )
    return ["", text + ("; " + "; ".join(parts) if parts else "") + "."]


def _worker_section(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Model {result.get('model')}; {result.get('cpus')} CPUs shared by the client and the worker.",
        "",
    ]
    headers = ("path", "c", "batch", "inferences/s", "p50 ms", "p99 ms", "errors")
    rows = [
        [
            r["path"],
            r["concurrency"],
            r["batch"],
            _num(r["inferences_per_s"]),
            _num(r["p50_ms"], 3),
            _num(r["p99_ms"], 3),
            r["errors"],
        ]
        for r in result.get("results", [])
    ]
    return lines + _table(headers, rows)


def _limiter_section(result: Mapping[str, Any]) -> list[str]:
    lines = [
        f"Event loop {result.get('event_loop')}; {result.get('callers')} callers; "
        f"{result.get('duration_s')} s per case; the filter's request phase driven directly (no HTTP).",
        "",
    ]
    headers = ("backend", "limits", "c", "decisions/s", "p50 µs", "p99 µs", "admitted")
    rows = [
        [
            r["backend"],
            r["limits"],
            r["concurrency"],
            _num(r["per_second"]),
            _num(r["p50_us"], 1),
            _num(r["p99_us"], 1),
            f"{r['admitted_fraction']:.0%}",
        ]
        for r in result.get("results", [])
    ]
    return lines + _table(headers, rows)


def _hotpath_section(result: Mapping[str, Any]) -> list[str]:
    installed = result.get("installed", {})
    source = result.get("source", {})
    lines = [
        f"A real gateway in one process with fake transports: {result.get('in_flight')} keep-alive "
        f"GET requests in flight, best of {result.get('rounds')} rounds of "
        f"{result.get('requests_per_round')}. CPU time per request in our code and the libraries it "
        "calls; no system calls (the kernel's share is in the proxy section's CPU µs/req).",
        "",
    ]
    rows = [
        [f"as installed ({installed.get('data_path', '?')})", _num(installed.get("us_per_request"), 2)],
        ["from source (TURNOUT_PURE_PYTHON=1)", _num(source.get("us_per_request"), 2)],
    ]
    lines += _table(("data path", "µs per request"), rows)
    ratio = result.get("installed_over_source")
    if ratio is not None:
        lines += ["", f"As installed / from source: {ratio:.2f}x."]
    return lines


def _filters_section(result: Mapping[str, Any]) -> list[str]:
    """bench/filter_cost.py: the chain built up one filter at a time; each filter's cost is the
    difference from the row before it."""
    rows_us: Mapping[str, float] = result.get("us_per_request", {})
    lines = [
        f"Data path: {result.get('data_path', '?')}. Each filter's cost: its row minus the row above.",
        "",
    ]
    rows = []
    previous: float | None = None
    for name, value in rows_us.items():
        if name in ("access_log", "no_access_log"):
            continue
        added = "-" if previous is None else _signed(value - previous, 2)
        rows.append([name if previous is None else f"+ {name}", _num(value, 2), added])
        previous = value
    if "access_log" in rows_us and "none" in rows_us:
        logged = rows_us["access_log"]
        rows.append(["no filters, access log on", _num(logged, 2), _signed(logged - rows_us["none"], 2)])
    if "no_access_log" in rows_us and "none" in rows_us:  # --scenario deployed: every row above logs
        unlogged = rows_us["no_access_log"]
        rows.append(["no filters, no access log", _num(unlogged, 2), _signed(unlogged - rows_us["none"], 2)])
    lines += _table(("route", "CPU µs per request", "added"), rows)
    return lines


_RENDERERS = {
    "deployed": _proxy_section,
    "deployed-chain": _proxy_section,
    "filters": _filters_section,
    "proxy": _proxy_section,
    "hotpath": _hotpath_section,
    "chain": _proxy_section,
    "cache": _proxy_section,
    "batching": _batching_section,
    "worker": _worker_section,
    "limiter": _limiter_section,
}


def _header(run: Mapping[str, Any]) -> list[str]:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{run.get('command', 'python bench/run_all.py')}` (what `make bench` runs), "
        f"started {run.get('started')}, finished {run.get('finished')}. Every figure below comes from "
        "that run.",
    ]
    if run.get("quick"):
        lines += ["", "**Quick run** (`--quick`): short durations, a smoke test; do not quote these figures."]
    if run.get("note"):
        lines += ["", f"> **Note.** {run['note']}"]
    machine = dict(run.get("machine", {}))
    machine["Load average (1/5/15 min), before / after"] = (
        f"{run.get('load_before', '-')} / {run.get('load_after', '-')}"
    )
    lines += ["", "## Machine", "", *_table(("", ""), list(machine.items()))]
    return lines


def _goals_section(run: Mapping[str, Any]) -> list[str]:
    goals = check_goals(run.get("sections", {}))
    rows = [[goal.what, goal.measured, goal.target, goal.verdict] for goal in goals]
    return ["", "## Targets", "", *_table(("", "measured", "target", "verdict"), rows)]


def _commands_section(sections: Mapping[str, Any]) -> list[str]:
    lines = [
        "",
        "## Commands",
        "",
        "Each run from the repository root with the project's Python (`.venv/bin/python`):",
        "",
        "```",
    ]
    for record in sections.values():
        lines.append(f"{record['command']}    # {record.get('seconds', '-')} s")
    return [*lines, "```"]


def render_results(run: Mapping[str, Any]) -> str:
    """The whole of RESULTS.md for one collected run."""
    sections: Mapping[str, Any] = run.get("sections", {})
    lines = _header(run) + _goals_section(run) + _commands_section(sections)
    for section in SECTIONS:
        record = sections.get(section.name)
        if record is None:
            continue
        lines += ["", f"## {section.title}", "", f"`{record['command']}`", ""]
        if "error" in record:
            lines += [f"**Failed:** {_cell(record['error'])}", ""]
        if isinstance(record.get("result"), Mapping):
            lines += _RENDERERS[section.name](record["result"])
    return "\n".join(lines).rstrip() + "\n"
