"""RESULTS.md rendered from a canned run of the suite, and the project's targets checked against it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import run_all
from _goals import MET, NOT_MEASURED, NOT_MET, check_goals
from _results_md import render_results


def _figures(rps: float, p50: float, p99: float, cpu: float | None) -> dict[str, Any]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "cpu_us_per_req": cpu, "requests": 1, "errors": 0}


PROXY = {
    "loadgen": "wrk",
    "upstream": "nginx 1.22.1 returning a fixed 200 (2-byte body)",
    "pinning": "taskset: proxy under test on CPU 0; upstream and load generator on CPU 1",
    "duration_s": 10.0,
    "warmup_s": 2.0,
    "chain": "none",
    "chain_description": "no filters",
    "requests": "GET /",
    "runs": {
        "32": {
            "direct": _figures(80000, 0.3, 0.5, None),
            "turnout": _figures(24000, 1.2, 4.5, 30.0),
            "nginx": _figures(40000, 0.6, 3.0, 15.0),
        },
        "128": {
            "direct": _figures(80000, 1.1, 1.6, None),
            "turnout": _figures(20000, 5.0, 9.0, 31.0),
            "nginx": {"error": "nginx did not start: bind() | failed\nTraceback ..."},
        },
    },
}
CHAIN = {
    **PROXY,
    "chain": "typical",
    "chain_description": "auth_jwt -> rate_limit -> cache",
    "runs": {
        "32": {
            "turnout": _figures(20000, 1.5, 5.0, 35.0),
            "turnout+typical": _figures(8000, 4.0, 7.0, 130.0),
        }
    },
    "chain_cost": {
        "32": {
            "target": "turnout+typical",
            "cpu_us_per_req": 95.0,
            "p50_ms": 2.5,
            "p99_ms": 2.0,
            "rps_ratio": 0.4,
        }
    },
}


def _batch_row(
    mode: str, concurrency: int, rps: float, p50: float, model_ms: float | None = None
) -> dict[str, Any]:
    rows = 1.0 if mode.startswith("off") else 32.0
    # Older results lack the worker's model time and the gateway's queue wait.
    wait = 2.0 if mode == "on" else 0.0
    extra = {} if model_ms is None else {"model_ms_per_call": model_ms, "wait_ms": wait}
    return {
        "mode": mode,
        "concurrency": concurrency,
        "requests_per_s": rps,
        "p50_ms": p50,
        "p99_ms": p50 * 2,
        "requests": int(rps),
        "errors": 0,
        "upstream_calls_per_s": rps / rows,
        "mean_batch_rows": rows,
        **extra,
    }


BATCHING = {
    "cpus": 2,
    "pinning": "taskset: worker on CPU 0; gateway and load generator on CPU 1",
    "loadgen": "wrk",
    "duration_s": 5.0,
    "warmup_s": 2.0,
    "rounds_at_c1": 3,
    "batcher": {"max_batch_size": 32, "max_queue_delay": "2ms"},
    "models": [
        {
            "model": "risk-mlp v1",
            "bound": "compute",
            "ceiling_rows_per_s": 5000.0,
            "results": [
                _batch_row("off", 1, 300, 3.0, 2.0),
                _batch_row("on", 1, 180, 5.6, 2.3),
                _batch_row("on, no delay", 1, 290, 3.1, 2.0),
                _batch_row("off, idle", 1, 200, 3.4, 2.3),
                _batch_row("off", 64, 450, 140.0, 2.1),
                _batch_row("on", 64, 3000, 20.0, 6.4),
            ],
        },
        {
            "model": "risk v2",
            "bound": "http",
            "ceiling_rows_per_s": 100000.0,
            "results": [
                _batch_row("off", 1, 3000, 0.3),
                _batch_row("on", 1, 350, 2.9),
                _batch_row("off", 64, 2500, 25.0),
                _batch_row("on", 64, 30000, 2.0),
            ],
        },
    ],
}
WORKER = {
    "model": "risk v2",
    "cpus": 2,
    "results": [
        {
            "path": "worker REST (JSON)",
            "concurrency": 8,
            "batch": 1,
            "inferences_per_s": 2500.0,
            "p50_ms": 2.1,
            "p99_ms": 9.3,
            "requests": 2500,
            "errors": 0,
        }
    ],
}
LIMITER = {
    "event_loop": "uvloop",
    "duration_s": 2.0,
    "callers": 1000,
    "results": [
        {
            "backend": "redis",
            "limits": 3,
            "concurrency": 16,
            "decisions": 12000,
            "seconds": 2.0,
            "admitted_fraction": 0.5,
            "p50_us": 1692.2,
            "p99_us": 5517.4,
            "per_second": 6000.0,
        }
    ],
}


def _record(command: str, result: dict[str, Any] | None, error: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"command": command, "seconds": 12.5}
    if result is not None:
        record["result"] = result
    if error is not None:
        record["error"] = error
    return record


RUN: dict[str, Any] = {
    "command": "python bench/run_all.py --note busy",
    "started": "2026-01-02 03:04 UTC",
    "finished": "2026-01-02 03:10 UTC",
    "quick": False,
    "note": "The machine was shared with other test runs.",
    "machine": {"CPUs (nproc)": "2 usable of 2", "CPU model": "AMD EPYC", "nginx": "1.22.1"},
    "load_before": "2.10 2.00 1.90",
    "load_after": "2.50 2.20 2.00",
    "sections": {
        "proxy": _record("python bench/proxy.py --concurrency 32,128 --json", PROXY),
        "chain": _record("python bench/proxy.py --compare-chain --json", CHAIN),
        "cache": _record(
            "python bench/proxy.py --chain cache-hit --json", None, "exited with status 1: boom"
        ),
        "batching": _record("python bench/batching.py --json", BATCHING),
        "worker": _record("python bench/worker.py --json", WORKER),
        "limiter": _record("python bench/limiter.py --json", LIMITER),
    },
}


def test_goals_are_checked_against_the_figures() -> None:
    verdicts = {goal.what: (goal.measured, goal.verdict) for goal in check_goals(RUN["sections"])}

    assert verdicts == {
        "turnout/nginx req/s at c=32": ("0.60x", MET),
        "turnout/nginx p99 at c=32": ("1.50x", MET),
        "turnout/nginx p99 at c=128": ("-", NOT_MEASURED),  # nginx failed at 128
        # The batching targets are the compute-bound model's; risk v2 (HTTP-bound) is not held to them.
        "risk-mlp v1: batching on/off req/s at c=64": ("6.67x", MET),
        "risk-mlp v1: batching on req/s / in-process ceiling at c=64": ("60.0%", NOT_MET),
        "risk-mlp v1: p50 added by batching at c=1": ("+2.60 ms", MET),
    }


def test_goals_without_results_are_not_measured() -> None:
    goals = check_goals({"proxy": {"command": "x", "error": "failed"}})

    assert goals
    assert all(goal.verdict == NOT_MEASURED for goal in goals)


def test_results_page_has_machine_date_note_commands_figures_and_targets() -> None:
    text = render_results(RUN)

    assert text.startswith("# Benchmark results\n")
    assert "`python bench/run_all.py --note busy`" in text
    assert "started 2026-01-02 03:04 UTC, finished 2026-01-02 03:10 UTC" in text
    assert "> **Note.** The machine was shared with other test runs." in text
    assert "| CPU model | AMD EPYC |" in text
    assert "| Load average (1/5/15 min), before / after | 2.10 2.00 1.90 / 2.50 2.20 2.00 |" in text
    assert "| turnout/nginx req/s at c=32 | 0.60x | >= 0.5x | met |" in text
    assert (
        "| risk-mlp v1: batching on req/s / in-process ceiling at c=64 | 60.0% | >= 70% | not met |" in text
    )
    assert (
        "| risk-mlp v1: p50 added by batching at c=1 | +2.60 ms | <= max_queue_delay + 1 ms (3 ms) | met |"
        in text
    )
    assert "python bench/batching.py --json    # 12.5 s" in text
    assert "| 32 | turnout | 24,000 | 1.200 | 4.500 | 30.0 | 0 |" in text
    # A failed row keeps its reason on one line, with the table's separator escaped.
    assert "| 128 | nginx | failed: nginx did not start: bind() \\| failed | - | - | - | - |" in text
    assert "- c=32: turnout/nginx: req/s 0.60x, p99 1.50x" in text
    assert "Requests, the same to every row: GET /." in text
    assert "| 32 | turnout+typical | +95.0 | +2.500 | +2.000 | 0.40x |" in text
    assert "**Failed:** exited with status 1: boom" in text
    assert "**risk-mlp v1** (compute-bound: the targets apply)" in text
    assert "| on | 64 | 3,000 | 20.00 | 40.00 | 94 | 32.0 | 6.400 | 2.000 | 0 |" in text
    assert "at c=1, each row is the median of 3 interleaved rounds of its modes" in text
    assert "*off, idle*: unbatched, the caller pausing max_queue_delay before each request" in text
    assert (
        "At c=1, batching adds +2.60 ms to p50 (on - off); idling as long without batching costs "
        "+0.40 ms (off, idle - off); the machinery without the wait +0.10 ms (on, no delay - off)." in text
    )
    assert (
        "Ceiling: onnxruntime in process at batch 32: 5,000 rows/s. At c=64: batching on/off 6.67x; "
        "on / ceiling 60.0%." in text
    )
    assert "| on, no delay | 1 | 290 | 3.10 |" in text
    assert "*on, no delay*: the same filter with max_queue_delay 0, at c=1 only" in text
    assert "**risk v2** (HTTP-bound: " in text
    assert "| on | 64 | 30,000 | 2.00 | 4.00 | 938 | 32.0 | - | - | 0 |" in text
    assert "At c=1, batching adds +2.60 ms to p50 (on - off)." in text
    assert "on / ceiling 30.0% (HTTP-bound)." in text
    assert text.index("**risk-mlp v1**") < text.index("**risk v2**")
    assert "| worker REST (JSON) | 8 | 1 | 2,500 | 2.100 | 9.300 | 0 |" in text
    assert "| redis | 3 | 16 | 6,000 | 1,692.2 | 5,517.4 | 50% |" in text
    assert "Quick run" not in text


def test_sections_appear_in_the_suites_order_and_absent_ones_are_left_out() -> None:
    run = {**RUN, "quick": True, "sections": {k: RUN["sections"][k] for k in ("limiter", "proxy")}}

    text = render_results(run)

    assert text.index("## Proxy") < text.index("## Rate-limit")
    assert "## Dynamic batching" not in text
    assert "**Quick run**" in text


def test_render_only_rewrites_the_page_from_a_saved_run(tmp_path: Path) -> None:
    saved, output = tmp_path / "run.json", tmp_path / "RESULTS.md"
    saved.write_text(json.dumps(RUN))

    code = run_all.main(["--render", str(saved), "--output", str(output)])

    assert code == 1  # the saved run has a failed section
    assert output.read_text() == render_results(RUN)


def test_the_displayed_command_does_not_repeat_the_note() -> None:
    assert run_all.displayed_command(["--quick", "--note", "busy machine", "--only", "proxy"]) == (
        "python bench/run_all.py --quick --note '(the note below)' --only proxy"
    )
    assert run_all.displayed_command(["--note=busy"]) == "python bench/run_all.py --note '(the note below)'"
    assert run_all.displayed_command(["--save-json", "/some/dir/r.json", "--output=/x/RESULTS.md"]) == (
        "python bench/run_all.py --save-json FILE --output FILE"
    )
    assert run_all.displayed_command(["--output", "a b.md"]) == "python bench/run_all.py --output 'a b.md'"


def test_the_hotpath_section_shows_both_data_paths_and_their_ratio() -> None:
    hotpath = {
        "requests_per_round": 5000,
        "rounds": 30,
        "in_flight": 32,
        "installed": {"data_path": "compiled", "us_per_request": 8.25},
        "source": {"data_path": "pure Python", "us_per_request": 13.5},
        "installed_over_source": 0.6111,
    }
    run = {**RUN, "sections": {"hotpath": _record("python bench/hotpath.py --json", hotpath)}}

    text = render_results(run)

    assert "## The data path's Python-side cost per request" in text
    assert "32 keep-alive GET requests in flight, best of 30 rounds of 5000" in text
    assert "| as installed (compiled) | 8.25 |" in text
    assert "| from source (TURNOUT_PURE_PYTHON=1) | 13.50 |" in text
    assert "As installed / from source: 0.61x." in text


def test_filter_costs_are_each_row_minus_the_one_above() -> None:
    from _results_md import _filters_section

    result = {
        "data_path": "compiled",
        "us_per_request": {
            "none": 20.0,
            "auth_jwt": 28.5,
            "rate_limit": 30.0,
            "cache": 41.25,
            "access_log": 22.0,
        },
    }

    table = "\n".join(_filters_section(result))

    assert "| none | 20.00 | - |" in table
    assert "| + auth_jwt | 28.50 | +8.50 |" in table
    assert "| + rate_limit | 30.00 | +1.50 |" in table
    assert "| + cache | 41.25 | +11.25 |" in table
    assert "| no filters, access log on | 22.00 | +2.00 |" in table
