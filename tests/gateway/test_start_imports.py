"""A gateway's start imports only what serving needs.

Every gateway process pays its imports at start, and the test suite starts hundreds of them. The
statistics (scipy), the report's renderers and plots, the export formats and the workers' model
runtimes are imported when they are used, never by `turnout run`: this test runs a real gateway,
sends it a request, stops it, and reads which modules it had imported by the time it exited.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import gateway_config
from tests.support.processes import ROOT, START_TIMEOUT_S, Process, _env, http_ok, wait_until

# What a running gateway must not import: statistics, an experiment's analysis (computed when its
# status is asked for), the report and its plots, Parquet export, data frames, and the inference
# workers' model runtimes.
HEAVY = (
    "scipy",
    "experiments.analysis",
    "experiments.report",
    "matplotlib",
    "pyarrow",
    "pandas",
    "sklearn",
    "onnxruntime",
    "torch",
)

# `turnout run` as the console script runs it, with a hook that writes every imported module's
# name to a file when the process exits (after a graceful stop, so start, serving and drain count).
CHILD = """
import atexit, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write("\\n".join(sorted(sys.modules))))
from gateway.cli import main
sys.exit(main())
"""


def _run_gateway(config: dict[str, Any], tmp_path: Path) -> set[str]:
    """Start `turnout run` on `config`, proxy one request, stop it; the modules it had imported."""
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    modules_path = tmp_path / "modules.txt"
    log_path = tmp_path / "gateway.log"
    argv = [sys.executable, "-c", CHILD, str(modules_path), "run", "--config", str(config_path)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    gateway = Process(proc, config["listen"]["port"], log_path)

    def ready() -> bool:
        assert proc.poll() is None, f"the gateway exited:\n{gateway.log()}"
        return http_ok(f"http://127.0.0.1:{config['admin']['port']}/readyz")

    try:
        wait_until(ready, START_TIMEOUT_S, message="gateway ready")
        request = urllib.request.Request(f"http://127.0.0.1:{gateway.port}/echo", headers={"x-user-id": "u1"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        returncode = gateway.stop()
    assert returncode == 0, gateway.log()
    return set(modules_path.read_text().split())


def _heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY))


def test_a_plain_gateway_imports_nothing_heavy(upstream_a: Process, tmp_path: Path) -> None:
    modules = _run_gateway(gateway_config([f"127.0.0.1:{upstream_a.port}"]), tmp_path)
    assert "gateway.server" in modules  # the hook saw the gateway's own imports
    assert _heavy(modules) == []


@pytest.mark.parametrize("kind", ["ab", "canary"])
def test_an_experiment_is_analysed_only_when_asked(
    kind: str, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    """A gateway running an experiment records its events from the first request; the statistics
    are imported by the first analysis (the admin API's status, a report, a canary's guardrail
    tick), not by the start."""
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[{"name": "exp", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}],
    )
    config["clusters"] = {
        "a": {"endpoints": [f"127.0.0.1:{upstream_a.port}"]},
        "b": {"endpoints": [f"127.0.0.1:{upstream_b.port}"]},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    experiment: dict[str, Any]
    if kind == "ab":
        experiment = {
            "kind": "ab",
            "unit": "header:x-user-id",
            "arms": {"control": {"cluster": "a", "weight": 50}, "treatment": {"cluster": "b", "weight": 50}},
        }
    else:
        # A long interval: the controller's first tick, which analyses, comes after the test.
        experiment = {
            "kind": "canary",
            "unit": "header:x-user-id",
            "baseline": {"cluster": "a"},
            "candidate": {"cluster": "b"},
            "steps": [{"percent": 50}, {"percent": 100}],
            "guardrails": [{"metric": "error_rate", "max_increase": 0.02}],
            "interval": "1h",
        }
    config["experiments"] = {"exp": experiment}
    modules = _run_gateway(config, tmp_path)
    assert "experiments.recorder" in modules
    assert _heavy(modules) == []
