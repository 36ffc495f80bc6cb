"""bench/monitor_step.py runs end to end, on this tree and (with --compare) on another one."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.processes import ROOT


def test_the_step_benchmark_reports_each_part_of_a_sample_for_both_trees() -> None:
    command = [
        sys.executable,
        str(ROOT / "bench" / "monitor_step.py"),
        "--batch",
        "20",
        "--features",
        "5",
        "--compare",
        str(ROOT),
        "--json",
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"this", "compare"}
    for parts in result.values():
        assert set(parts) == {"hand_over", "decode", "step"}
        assert all(value > 0 for value in parts.values())
