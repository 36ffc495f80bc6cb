"""Alerts, recording rules and the Grafana dashboard, checked by the real tools: `promtool check
rules` and `promtool test rules` (a unit test per alert in deploy/prometheus/rules_test.yml), every
dashboard query parsed by promtool, and every metric a rule or panel names exported by a running
gateway (the demo's config, every filter family registered) or recorded by recording.yml."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.processes import ROOT, free_port

PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "turnout.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool is not installed (apt-get install prometheus)",
)
# A metric name in PromQL: turnout_... or a recorded level:metric:operations name.
_METRIC = re.compile(r"\b((?:[a-z_]+:)?turnout_[a-z0-9_]+(?::[a-z0-9_]+)?)\b")
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("",), "gauge": ("",)}


def _promtool(*args: str, cwd: Path = PROMETHEUS) -> str:
    assert PROMTOOL is not None
    done = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def _rule_queries() -> list[str]:
    queries: list[str] = []
    for name in ("alerts.yml", "recording.yml"):
        for group in yaml.safe_load((PROMETHEUS / name).read_text())["groups"]:
            queries.extend(rule["expr"] for rule in group["rules"])
    return queries


def _recorded() -> set[str]:
    groups = yaml.safe_load((PROMETHEUS / "recording.yml").read_text())["groups"]
    return {rule["record"] for group in groups for rule in group["rules"]}


@needs_promtool
def test_promtool_checks_the_rule_files() -> None:
    out = _promtool("check", "rules", "recording.yml", "alerts.yml")
    assert out.count("SUCCESS") == 2


@needs_promtool
def test_every_alert_has_a_unit_test_and_they_pass() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    tests = yaml.safe_load((PROMETHEUS / "rules_test.yml").read_text())["tests"]
    tested = {
        case["alertname"] for test in tests for case in test.get("alert_rule_test", []) if case["exp_alerts"]
    }
    assert alerts == tested
    assert "SUCCESS" in _promtool("test", "rules", "rules_test.yml")


@needs_promtool
def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = _panel_queries()
    assert len(queries) >= 20
    # promtool parses PromQL when it checks rules: one recording rule per panel query.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [{"record": f"panel_{i}", "expr": expr} for i, (_, expr) in enumerate(queries)],
            }
        ]
    }
    (tmp_path / "panels.yml").write_text(yaml.safe_dump(rules))
    assert f"SUCCESS: {len(queries)} rules found" in _promtool("check", "rules", "panels.yml", cwd=tmp_path)


def _exported(body: str) -> set[str]:
    names: set[str] = set()
    for kind_line in re.finditer(r"^# TYPE (\S+) (\S+)$", body, re.M):
        name, kind = kind_line.groups()
        names.update(name + suffix for suffix in _SUFFIXES.get(kind, ("",)))
    return names


def _demo_config(tmp_path: Path) -> tuple[Path, int]:
    """demo.yaml on free ports (edited as text: the demo's own YAML, `on:` keys included)."""
    admin_port = free_port()
    text = (ROOT / "config" / "examples" / "demo.yaml").read_text()
    for old, new in (
        ("port: 8080\n", f"port: {free_port()}\n"),
        ("port: 9901\n", f"port: {admin_port}\n"),
        ("${TURNOUT_ACCESS_LOG:-stdout}", str(tmp_path / "access.log")),
        ("sqlite_path: var/turnout.db", f"sqlite_path: {tmp_path / 'events.db'}"),
    ):
        assert old in text, f"demo.yaml no longer holds {old!r}: update this test"
        text = text.replace(old, new)
    path = tmp_path / "demo.yaml"
    path.write_text(text)
    return path, admin_port


async def test_rules_and_panels_name_only_metrics_turnout_exports(tmp_path: Path) -> None:
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    path, admin_port = _demo_config(tmp_path)
    gateway = Gateway(load_gateway_config(path), path)
    await gateway.start()
    try:
        url = f"http://127.0.0.1:{admin_port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=10).read().decode())
    finally:
        await gateway.shutdown(drain_timeout=1.0)
    exported = _exported(body)
    assert "turnout_drift_psi" in exported and "turnout_prediction_confidence_bucket" in exported
    # The experiment status the rollback alerts read: one sample per experiment, its current status.
    assert 'turnout_experiment_status{experiment="risk-ab",kind="ab",status="running"} 1.0' in body
    assert 'turnout_experiment_status{experiment="risk-canary",kind="canary",status="running"} 1.0' in body
    recorded = _recorded()
    named = {
        (where, name)
        for where, expr in [*_panel_queries(), *(("rule", expr) for expr in _rule_queries())]
        for name in _METRIC.findall(expr)
    }
    assert len({name for _, name in named}) > 30
    unknown = sorted((where, name) for where, name in named if name not in exported and name not in recorded)
    assert unknown == []
    # Every recorded series is used by an alert or a panel.
    used = {name for _, name in named}
    assert recorded <= used
