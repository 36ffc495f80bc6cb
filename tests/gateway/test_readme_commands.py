"""Commands the README gives a newcomer work as written: `turnout --version`, and `turnout report`
run from any directory, which finds the demo's config and event store in the project, not in the
working directory."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support.processes import ROOT

# The CLI answers in about a second; this only bounds a hung child.
CLI_TIMEOUT_S = 60.0
DEMO_CONFIG = ROOT / "config" / "examples" / "demo.yaml"


def _turnout(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def test_version_prints_the_projects_version(tmp_path: Path) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = _turnout("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"turnout {declared}\n"


def test_report_outside_the_project_reads_the_demo_config(tmp_path: Path) -> None:
    """From an empty directory the default config is still the demo's: its experiments are known."""
    result = _turnout("report", "no-such-experiment", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        f"turnout report: no experiment 'no-such-experiment' in {DEMO_CONFIG} (known: risk-ab, risk-canary)\n"
    )


def test_report_outside_the_project_looks_for_the_demo_store_in_the_project(tmp_path: Path) -> None:
    """The demo gateway runs in the project root and writes its relative store (var/turnout.db) there."""
    result = _turnout("report", "risk-ab", "--format", "md", cwd=tmp_path)
    store = ROOT / "var" / "turnout.db"
    if store.exists():  # a demo has run in this checkout: its events are reported
        assert result.returncode == 0, result.stderr
        assert "risk-ab" in result.stdout
    else:
        assert result.returncode == 1
        assert f"no event store at {store}" in result.stderr
    assert not (tmp_path / "var").exists()
    assert "cannot read the file" not in result.stderr


def test_an_explicit_store_is_taken_as_given(tmp_path: Path) -> None:
    missing = tmp_path / "elsewhere.db"
    result = _turnout("export", "risk-ab", "--store", str(missing), "--out", "e.csv", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == f"turnout export: no event store at {missing}\n"
