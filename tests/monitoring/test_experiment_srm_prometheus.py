"""A real Prometheus with deploy/prometheus's rules scrapes a real turnout whose A/B test's event
store holds 600 units in one arm and 400 in the other of a 50/50 split: the sample-ratio-mismatch
alert fires for that experiment (rules edited as in test_monitor_prometheus: no `for:`, 1 s groups)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from experiments.events import Exposure
from experiments.store.sqlite import SqliteEventStore
from tests.monitoring.test_monitor_prometheus import FIRING_TIMEOUT_S, _firing, _rules
from tests.support.processes import GatewayProcess, free_port, start_gateway
from tests.support.prometheus_server import PROMETHEUS, PrometheusProcess, start_prometheus

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not os.environ.get("CI"),
    reason="prometheus is not installed (apt-get install prometheus)",
)


async def _seed(path: Path) -> None:
    """Units as a broken split would leave them: 600 in control, 400 in treatment."""
    now = time.time()
    exposures = [
        Exposure("ab", "control" if i < 600 else "treatment", f"user-{i}", f"request-{i}", now)
        for i in range(1000)
    ]
    async with SqliteEventStore(path) as store:
        await store.write(exposures)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[GatewayProcess, str]]:
    asyncio.run(_seed(tmp_path / "events.db"))
    port, admin_port, upstream_port = free_port(), free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "access_log": {"enabled": False},
        "state": {"sqlite_path": str(tmp_path / "events.db")},
        "clusters": {
            "v1": {"endpoints": [f"127.0.0.1:{upstream_port}"]},
            "v2": {"endpoints": [f"127.0.0.1:{upstream_port}"]},
        },
        "experiments": {
            "ab": {
                "kind": "ab",
                "unit": "header:x-user-id",
                "arms": {
                    "control": {"cluster": "v1", "weight": 50},
                    "treatment": {"cluster": "v2", "weight": 50},
                },
                "metrics": ["latency"],
            }
        },
        "routes": [{"name": "ab", "match": {"prefix": "/v2/"}, "backend": {"experiment": "ab"}}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    gateway: GatewayProcess | None = None
    prometheus: PrometheusProcess | None = None
    try:
        gateway = start_gateway(path, port, admin_port, tmp_path)
        prometheus = start_prometheus(tmp_path, admin_port, _rules(tmp_path))
        url = prometheus.url
        yield gateway, url
    finally:
        if prometheus is not None:
            prometheus.stop()
        if gateway is not None:
            gateway.stop()


def test_a_split_that_does_not_hold_fires_the_srm_alert(stack: tuple[GatewayProcess, str]) -> None:
    _, prometheus = stack
    deadline = time.monotonic() + FIRING_TIMEOUT_S
    firing: set[tuple[str, str]] = set()
    while time.monotonic() < deadline:
        firing = {
            (alert["labels"]["alertname"], alert["labels"].get("experiment", ""))
            for alert in _firing(prometheus)
        }
        if ("TurnoutExperimentSampleRatioMismatch", "ab") in firing:
            break
        time.sleep(0.5)
    assert ("TurnoutExperimentSampleRatioMismatch", "ab") in firing, firing
