"""The `turnout` command as a user runs it: a real subprocess, its exit status and what it prints."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.processes import ROOT, free_port

# A CLI that validates a file answers in well under a second; this only bounds a hung child.
CLI_TIMEOUT_S = 60.0
# One error line: `FILE:LINE: FIELD.PATH: message`.
ERROR_LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<field>[\w.\[\]-]+): (?P<message>.+)$")


def _turnout(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def _minimal_config(**listen: int) -> dict[str, object]:
    return {
        "listen": {"host": "127.0.0.1", "port": free_port(), **listen},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "clusters": {"up": {"endpoints": ["127.0.0.1:9"]}},
        "routes": [{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "up"}}],
    }


def test_validate_prints_a_one_line_summary_of_a_good_file() -> None:
    result = _turnout("validate", "config/examples/quickstart.yaml")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "config/examples/quickstart.yaml: ok: 1 route, 1 cluster (2 endpoints), "
        "listening on 127.0.0.1:8080, admin on 127.0.0.1:9901\n"
    )
    assert result.stderr == ""


def test_validate_reports_every_problem_with_file_line_and_field(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "listen:\n"
        "  port: 99999\n"
        "clusters:\n"
        "  up:\n"
        "    endpoints: [127.0.0.1:9000]\n"
        "    balancer: round_robbin\n"
        "routes:\n"
        "  - name: all\n"
        "    match: {prefix: /}\n"
        "    backend: {cluster: up}\n"
    )
    result = _turnout("validate", str(broken), "config/examples/quickstart.yaml")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    matches = [ERROR_LINE.match(line) for line in lines]
    assert all(matches), lines
    found = [(m["file"], int(m["line"]), m["field"]) for m in matches if m]
    assert found == [(str(broken), 2, "listen.port"), (str(broken), 6, "clusters.up.balancer")]
    assert "65535" in lines[0]
    assert "did you mean 'round_robin'" in lines[1]
    # The good file given with it is still checked and summarized.
    assert result.stdout.startswith("config/examples/quickstart.yaml: ok: ")


def test_schema_prints_the_committed_json_schema() -> None:
    result = _turnout("schema")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed == json.loads((ROOT / "config" / "schema.json").read_text())
    assert {"listen", "admin", "clusters", "routes"} <= set(printed["properties"])


def test_run_with_a_missing_config_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    result = _turnout("run", "--config", str(missing))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == f"{missing}: cannot read the file: No such file or directory"


def test_run_with_an_invalid_config_exits_1_with_the_errors(tmp_path: Path) -> None:
    config = _minimal_config()
    config["routes"] = [{"name": "all", "match": {"prefix": "/"}, "backend": {"cluster": "nope"}}]
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _turnout("run", "--config", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(ERROR_LINE.match(line) for line in lines), lines
    assert any("routes[0].backend.cluster" in line and "'nope'" in line for line in lines), lines


def test_run_on_a_port_in_use_exits_1_without_a_traceback(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = _minimal_config(port=taken.getsockname()[1])
        path = tmp_path / "gw.yaml"
        path.write_text(yaml.safe_dump(config))
        result = _turnout("run", "--config", str(path), "--no-watch")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("turnout: cannot start: ")
    assert "address already in use" in result.stderr
