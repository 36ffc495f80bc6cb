"""bench/monitor_cost.py runs end to end: two real gateways side by side (and a third, the A/A pair's
other half), a real upstream, a paced load, and a result."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import ROOT


def test_the_monitor_benchmark_reports_cpu_per_request_for_both_gateways() -> None:
    command = [
        sys.executable,
        str(ROOT / "bench" / "monitor_cost.py"),
        "--rate",
        "200",
        "--window",
        "1",
        "--rounds",
        "2",
        "--sample-rate",
        "0.5",
        "--aa",
        "--json",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result["cpu_us_per_request"]) == {"baseline", "monitor", "baseline-2"}
    assert set(result["rise_percent"]) == set(result["round_rises_percent"]) == {"monitor", "baseline-2"}
    assert all(value > 0 for value in result["cpu_us_per_request"].values())
    assert result["features"] == 30 and result["sample_rate"] == 0.5
    # The monitored gateway really sampled: about half of its 400 requests were studied.
    answered = result["answered"]["monitor"]
    assert answered >= 300
    assert 0.3 * answered <= result["monitor_samples"]["queued"] <= 0.7 * answered
