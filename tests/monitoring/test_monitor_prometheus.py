"""A real Prometheus server scrapes a real turnout and evaluates deploy/prometheus's rules: the
error-ratio alert fires on injected 5xx answers, the drift alert on a shifted feature, and nothing
else from the models group fires.

The rules are the repository's own, with two edits a test needs (said here, done in `_rules`):
every `for:` is dropped and every group is evaluated each second, so an alert that waits minutes
in production fires within seconds here. Prometheus scrapes the admin listener every second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from tests.support.processes import ROOT, GatewayProcess, free_port, http_ok, start_gateway, wait_until
from tests.support.prometheus_server import PROMETHEUS, PrometheusProcess, start_prometheus

RULES = ROOT / "deploy" / "prometheus"
WIDTH = 4
# Alerts need two scrapes for a rate and one rule evaluation after them; 60 s covers a slow start.
FIRING_TIMEOUT_S = 60.0

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not os.environ.get("CI"),
    reason="prometheus is not installed (apt-get install prometheus)",
)


def _rules(directory: Path) -> list[str]:
    names = []
    for name in ("recording.yml", "alerts.yml"):
        document = yaml.safe_load((RULES / name).read_text())
        for group in document["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule.pop("for", None)
        (directory / name).write_text(yaml.safe_dump(document))
        names.append(str(directory / name))
    return names


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[GatewayProcess, str]]:
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.oip_upstream", "--port", str(upstream_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway: GatewayProcess | None = None
    prometheus: PrometheusProcess | None = None
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{upstream_port}/healthz"), 30, message="upstream")
        np.save(tmp_path / "reference.npy", np.random.default_rng(1).normal(size=(2000, WIDTH)))
        port, admin_port = free_port(), free_port()
        monitor = {
            "sample_rate": 1.0,
            "flush_interval": "0s",
            "min_samples": 200,
            "models": {"risk": {"reference": "reference.npy"}},
        }
        config = {
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "access_log": {"enabled": False},
            "clusters": {"models": {"endpoints": [f"127.0.0.1:{upstream_port}"]}},
            "routes": [
                {
                    "name": "risk",
                    "match": {"model": "risk", "prefix": "/v2/"},
                    "backend": {"cluster": "models"},
                    "filters": [{"monitor": monitor}],
                },
                {"name": "failing", "match": {"prefix": "/status/"}, "backend": {"cluster": "models"}},
            ],
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = start_gateway(path, port, admin_port, tmp_path)
        prometheus = start_prometheus(tmp_path, admin_port, _rules(tmp_path))
        url = prometheus.url
        yield gateway, url
    finally:
        if prometheus is not None:
            prometheus.stop()
        if gateway is not None:
            gateway.stop()
        upstream.terminate()
        upstream.wait(10)


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, body, {"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
            return int(answer.status)
    except urllib.error.HTTPError as refused:
        refused.close()
        return int(refused.code)


def _firing(prometheus: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{prometheus}/api/v1/alerts", timeout=10) as answer:
        alerts: list[dict[str, Any]] = orjson.loads(answer.read())["data"]["alerts"]
    return [alert for alert in alerts if alert["state"] == "firing"]


def test_errors_and_drift_fire_their_alerts(stack: tuple[GatewayProcess, str]) -> None:
    gateway, prometheus = stack
    rng = np.random.default_rng(2)
    rows = rng.normal(size=(400, WIDTH))
    rows[:, 2] += 1.0  # one standard deviation: PSI far above psi_alert
    for start in range(0, len(rows), 20):
        chunk = rows[start : start + 20]
        body = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "x",
                        "datatype": "FP64",
                        "shape": list(chunk.shape),
                        "data": chunk.reshape(-1).tolist(),
                    }
                ]
            }
        )
        assert _post(f"{gateway.url}/v2/models/risk/infer", body) == 200
    deadline = time.monotonic() + FIRING_TIMEOUT_S
    names: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        # Keep errors flowing so the 5-minute rate stays above the alert's threshold.
        for _ in range(5):
            assert _post(f"{gateway.url}/status/500", b"{}") == 500
        firing = _firing(prometheus)
        names = {
            (alert["labels"]["alertname"], alert["labels"].get("feature", alert["labels"].get("route", "")))
            for alert in firing
        }
        if {("TurnoutFeatureDrift", "2"), ("TurnoutHighErrorRatio", "failing")} <= names:
            break
        time.sleep(0.5)
    assert ("TurnoutHighErrorRatio", "failing") in names, names
    assert ("TurnoutFeatureDrift", "2") in names, names
    # Only the shifted feature drifted, and nothing else about the model alarms.
    model_alerts = {
        name
        for name in names
        if name[0] in {"TurnoutFeatureDrift", "TurnoutFeatureNaNRate", "TurnoutConfidenceDrop"}
    }
    assert model_alerts == {("TurnoutFeatureDrift", "2")}
