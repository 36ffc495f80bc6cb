"""bench/tracing_cost.py: every mode runs the whole data path and reports a cost per request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_tracing_off_and_on_each_report_a_cost_per_request() -> None:
    argv = [sys.executable, str(ROOT / "bench" / "tracing_cost.py")]
    argv += ["--rounds=1", "--requests=64", "--in-flight=4", "--ratios=0,1.0", "--filter", "--json"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(results) == ["off", "0", "1.0"]
    for result in results.values():
        # From a microsecond to a tenth of a second is plausible on a loaded machine; zero or less
        # would mean the requests never completed or the clock is wrong.
        assert 1 < result["us_per_request"] < 100_000
