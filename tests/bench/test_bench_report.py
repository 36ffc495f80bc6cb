"""The benchmark's tables and JSON summary."""

from __future__ import annotations

import pytest
from _report import Measured, Outcome, Unavailable, chain_cost, render_tables, summary
from _results import LoadResult


def _measured(rps: float, p99_ms: float, cpu: float | None) -> Measured:
    load = LoadResult(requests=int(rps * 2), errors=0, duration_s=2.0, p50_ms=p99_ms / 2, p99_ms=p99_ms)
    return Measured(load, cpu)


def _runs() -> dict[int, dict[str, Outcome]]:
    return {
        8: {"direct": _measured(1000, 1.0, None), "turnout": _measured(250, 4.0, 30.0)},
        32: {
            "direct": _measured(2000, 2.0, None),
            "turnout": _measured(500, 8.0, 40.0),
            "nginx": _measured(1000, 4.0, 10.0),
        },
    }


def test_summary_headlines_concurrency_32_and_keeps_every_run() -> None:
    result = summary(_runs(), {"loadgen": "wrk"})

    assert result["concurrency"] == 32
    assert result["direct_rps"] == 2000.0
    assert result["turnout_rps"] == 500.0
    assert result["nginx_rps"] == 1000.0
    assert result["turnout_p99_ms"] == 8.0
    assert result["nginx_p99_ms"] == 4.0
    assert result["nginx_cpu_us_per_req"] == 10.0
    assert result["loadgen"] == "wrk"
    assert set(result["runs"]) == {"8", "32"}
    assert result["runs"]["8"]["turnout"]["cpu_us_per_req"] == 30.0


def test_summary_falls_back_to_the_first_concurrency_and_nulls_missing_targets() -> None:
    runs: dict[int, dict[str, Outcome]] = {
        8: {
            "direct": _measured(1000, 1.0, None),
            "nginx": Unavailable("nginx is not installed", failed=False),
        }
    }

    result = summary(runs, {})

    assert result["concurrency"] == 8
    assert result["direct_rps"] == 1000.0
    assert result["nginx_rps"] is None
    assert result["turnout_rps"] is None
    assert result["runs"]["8"]["nginx"] == {"skipped": "nginx is not installed"}


def test_tables_show_ratios_and_failures_on_one_line() -> None:
    runs = _runs()
    runs[8]["nginx"] = Unavailable("nginx did not start: exited:\nTraceback\nOSError: boom", failed=True)

    text = render_tables(runs, ["header line"])

    assert text.startswith("header line")
    assert "turnout/nginx: req/s 0.50x, p99 2.00x; turnout/direct: req/s 0.25x, p99 4.00x" in text
    assert "nginx    failed: nginx did not start: exited: ... OSError: boom" in text
    assert "turnout/direct: req/s 0.25x, p99 4.00x" in text.split("concurrency 32")[0]


def _chain_runs() -> dict[int, dict[str, Outcome]]:
    return {
        32: {
            "turnout": _measured(1000, 4.0, 30.0),
            "turnout+typical": _measured(500, 6.0, 90.0),
        }
    }


def test_chain_cost_is_the_chained_row_minus_the_plain_one() -> None:
    cost = chain_cost(_chain_runs()[32])

    assert cost is not None
    assert cost.label == "turnout+typical"
    assert cost.cpu_us_per_req == pytest.approx(60.0)
    assert cost.p50_ms == pytest.approx(1.0)
    assert cost.p99_ms == pytest.approx(2.0)
    assert cost.rps_ratio == pytest.approx(0.5)


def test_no_chain_cost_without_both_turnout_rows() -> None:
    runs = _chain_runs()
    assert chain_cost({"turnout": runs[32]["turnout"]}) is None
    assert chain_cost({**runs[32], "turnout+typical": Unavailable("boom", failed=True)}) is None


def test_summary_and_tables_carry_the_chained_row_and_its_cost() -> None:
    runs = _chain_runs()

    result = summary(runs, {"chain": "typical"})
    text = render_tables(runs, [])

    assert result["turnout_typical_rps"] == 500.0
    assert result["turnout_typical_cpu_us_per_req"] == 90.0
    assert result["nginx_rps"] is None
    assert result["chain_cost"]["32"] == {
        "target": "turnout+typical",
        "cpu_us_per_req": 60.0,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "rps_ratio": 0.5,
    }
    assert "turnout+typical vs turnout: CPU µs/req +60.0, p50 +1.000 ms, p99 +2.000 ms, req/s 0.50x" in text
    assert "  turnout+typical        500" in text


def test_summary_has_no_chain_cost_without_a_chain() -> None:
    assert "chain_cost" not in summary(_runs(), {})
