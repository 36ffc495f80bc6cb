"""End to end: the runner drives the `ab` locustfile headless against a real gateway.

The gateway (its own process) fronts the test upstream on a route that stamps every answer with a
fixed arm, the way the A/B route stamps its own; the run must find every user id in one arm, so
the summary says `sticky violations: 0`. Locust runs for 3 seconds; each run takes ~10 s.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from loadtests.traffic_report import TrafficReport
from tests.conftest import gateway_config
from tests.support.processes import ROOT, GatewayProcess, Process, start_gateway

# The run itself (3 s) plus Locust's start-up and reports, with room for a loaded 2-core machine.
RUN_TIMEOUT_S = 60
# How far the measured window may fall short of the duration asked: users start at once and the
# first request leaves with them. Before Locust's timer was counted from the real start, a 3 s run
# lost the ~1 s Locust spends importing the locustfile and its dataset, and more on a busy machine.
EARLY_STOP_TOLERANCE_S = 0.3
# How far it may run over: users finish the request in flight when the time is up.
LATE_STOP_TOLERANCE_S = 1.5


@pytest.fixture
def stamping_gateway(upstream_a: Process, tmp_path: Path) -> Iterator[GatewayProcess]:
    route = {
        "name": "risk-ab",
        "match": {"prefix": "/"},
        "backend": {"cluster": "up"},
        "response_headers": {"add": {"x-turnout-arm": "control", "x-turnout-experiment": "risk-ab"}},
    }
    config = gateway_config([f"127.0.0.1:{upstream_a.port}"], routes=[route])
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], tmp_path)
    yield gateway
    gateway.stop()


def test_ab_run_reports_no_sticky_violation_and_the_arm_split(
    stamping_gateway: GatewayProcess, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--scenario",
        "ab",
        "--users",
        "4",
        "--duration",
        "3s",
        "--host",
        stamping_gateway.url,
        "--admin",
        stamping_gateway.admin_url,
        "--no-start",
        "--results-dir",
        str(results),
        "--",
        "--user-pool",
        "50",
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout
    assert "sticky violations: 0 " in summary
    assert "arms split (answers): control " in summary and "(100.0%)" in summary
    assert "result: PASS" in summary
    assert "failures: 0 " in summary

    (traffic_file,) = results.glob("ab-*-traffic.json")
    traffic = TrafficReport.read(traffic_file)
    assert traffic.requests > 0
    assert set(traffic.arms) == {"control"}
    # With 50 ids, most are drawn more than once: stickiness was actually exercised.
    assert traffic.ledger.revisited_units > 10
    assert traffic.ledger.units <= 50
    # Every file the runner promises is there.
    for suffix in ("_final_stats.csv", "_stats.csv", ".html", "-locust.log", "-summary.txt"):
        assert list(results.glob(f"ab-*{suffix}")), suffix
    assert (
        results / traffic_file.name.replace("-traffic.json", "-summary.txt")
    ).read_text() in summary + "\n"


def test_the_load_runs_as_long_as_asked_and_its_rate_is_requests_over_that_window(
    stamping_gateway: GatewayProcess, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    duration_s = 3
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--scenario",
        "ab",
        "--users",
        "2",
        "--duration",
        f"{duration_s}s",
        "--host",
        stamping_gateway.url,
        "--admin",
        stamping_gateway.admin_url,
        "--no-start",
        "--results-dir",
        str(results),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 0, run.stdout + run.stderr

    (traffic_file,) = results.glob("ab-*-traffic.json")
    traffic = TrafficReport.read(traffic_file)
    assert duration_s - EARLY_STOP_TOLERANCE_S <= traffic.span_s <= duration_s + LATE_STOP_TOLERANCE_S
    window = re.search(r"^measured window: ([0-9.]+)s ", run.stdout, re.MULTILINE)
    rate = re.search(r"^requests: (\d+) \(([0-9.]+) req/s\)", run.stdout, re.MULTILINE)
    assert window is not None and rate is not None, run.stdout
    assert float(window.group(1)) == pytest.approx(traffic.span_s, abs=0.005)
    requests, per_second = int(rate.group(1)), float(rate.group(2))
    assert requests == traffic.requests
    assert per_second == pytest.approx(requests / traffic.span_s, abs=0.05)


def test_a_gateway_that_does_not_answer_is_not_replaced_by_the_demo(tmp_path: Path) -> None:
    """With addresses other than the demo's, the runner refuses instead of starting anything."""
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--scenario",
        "ab",
        "--host",
        "http://127.0.0.1:9",
        "--admin",
        "http://127.0.0.1:9",
        "--results-dir",
        str(tmp_path),
    ]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert run.returncode == 2
    assert "only the demo stack" in run.stderr
    assert not list(tmp_path.glob("*-locust.log"))
