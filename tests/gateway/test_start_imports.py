"""A gateway's start imports only what serving needs.

Every gateway process pays its imports at start, and the test suite starts hundreds of them. The
statistics (scipy), an experiment's analysis, the report's renderers and plots, the export formats
and the workers' model runtimes are imported when they are used, never by a plain `turnout run`.
A gateway that runs an A/B test or a canary imports scipy as it starts, before it serves, so that
its first analysis does not stall requests in flight. Each test runs a real gateway, sends it a
request and stops it, and reads which modules it had imported when it began to serve and when it
exited.
"""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import gateway_config
from tests.support.processes import ROOT, START_TIMEOUT_S, Process, _env, http_ok, wait_until

STATISTICS = ("scipy", "experiments.analysis")
# What no gateway imports to serve: the report and its plots, Parquet export, data frames, and the
# inference workers' model runtimes.
NEVER = ("experiments.report", "matplotlib", "pyarrow", "pandas", "sklearn", "onnxruntime", "torch")

# `turnout run` as the console script runs it, with hooks that write every imported module's name
# to OUT.start once the gateway has started (its listeners open, about to serve) and to OUT.exit
# when the process exits (after a graceful stop).
CHILD = """
import atexit, sys
out = sys.argv.pop(1)

def record(suffix):
    with open(out + suffix, "w") as file:
        file.write("\\n".join(sorted(sys.modules)))

from gateway.server import Gateway
start = Gateway.start

async def start_and_record(self):
    await start(self)
    record(".start")

Gateway.start = start_and_record
atexit.register(record, ".exit")
from gateway.cli import main
sys.exit(main())
"""


@dataclass(frozen=True)
class Imported:
    at_start: set[str]
    at_exit: set[str]


def _run_gateway(config: dict[str, Any], tmp_path: Path) -> Imported:
    """Start `turnout run` on `config`, proxy one request, stop it; the modules it had imported."""
    config_path = tmp_path / "gateway.yaml"
    config_path.write_text(yaml.safe_dump(config))
    modules_path = tmp_path / "modules"
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
    return Imported(_modules(modules_path, ".start"), _modules(modules_path, ".exit"))


def _modules(path: Path, suffix: str) -> set[str]:
    return set(Path(f"{path}{suffix}").read_text().split())


def _of(packages: tuple[str, ...], modules: set[str]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in packages))


def test_a_plain_gateway_imports_nothing_heavy(upstream_a: Process, tmp_path: Path) -> None:
    imported = _run_gateway(gateway_config([f"127.0.0.1:{upstream_a.port}"]), tmp_path)
    assert "gateway.server" in imported.at_start  # the hooks saw the gateway's own imports
    assert _of(STATISTICS + NEVER, imported.at_exit) == []


@pytest.mark.parametrize("kind", ["ab", "canary"])
def test_a_gateway_that_analyses_an_experiment_imports_scipy_before_it_serves(
    kind: str, upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
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
    imported = _run_gateway(config, tmp_path)
    assert {"experiments.recorder", "scipy.stats", "scipy.special", "scipy.optimize"} <= imported.at_start
    assert _of(NEVER, imported.at_exit) == []


def test_a_blue_green_switch_computes_no_statistics(
    upstream_a: Process, upstream_b: Process, tmp_path: Path
) -> None:
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        routes=[{"name": "exp", "match": {"prefix": "/"}, "backend": {"experiment": "exp"}}],
    )
    config["clusters"] = {
        "blue": {"endpoints": [f"127.0.0.1:{upstream_a.port}"]},
        "green": {"endpoints": [f"127.0.0.1:{upstream_b.port}"]},
    }
    config["state"] = {"sqlite_path": str(tmp_path / "events.db")}
    config["experiments"] = {
        "exp": {
            "kind": "blue_green",
            "active": "blue",
            "colors": {"blue": {"cluster": "blue"}, "green": {"cluster": "green"}},
        }
    }
    imported = _run_gateway(config, tmp_path)
    assert "experiments.splits.blue_green" in imported.at_start
    assert _of(STATISTICS + NEVER, imported.at_exit) == []
