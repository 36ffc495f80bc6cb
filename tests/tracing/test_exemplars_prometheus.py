"""A real Prometheus with exemplar storage scrapes a gateway and keeps a traced request's trace id."""

from __future__ import annotations

import json
import os
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support.processes import GatewayProcess, free_port, start_gateway, wait_until
from tests.support.prometheus_server import PROMETHEUS, PrometheusProcess, start_prometheus

pytestmark = pytest.mark.skipif(
    PROMETHEUS is None and not os.environ.get("CI"),
    reason="prometheus is not installed (apt-get install prometheus)",
)


def _exemplar_trace_ids(url: str) -> set[str]:
    now = time.time()
    query = urllib.parse.urlencode(
        {"query": "turnout_request_duration_seconds_bucket", "start": now - 300, "end": now + 60}
    )
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query_exemplars?{query}", timeout=5) as response:
            data = json.load(response)["data"]
    except (OSError, ValueError):
        return set()
    return {e["labels"].get("trace_id", "") for series in data for e in series["exemplars"]}


def test_prometheus_stores_the_traced_requests_exemplar(tmp_path: Path) -> None:
    upstream_port = free_port()  # nothing listens: the gateway answers 503, traced all the same
    port, admin_port = free_port(), free_port()
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "admin": {"host": "127.0.0.1", "port": admin_port},
        "access_log": {"enabled": False},
        "tracing": {
            "enabled": True,
            "sampling_ratio": 0.0,
            "endpoint": f"http://127.0.0.1:{free_port()}/v1/traces",  # spans are dropped
        },
        "clusters": {"up": {"endpoints": [f"127.0.0.1:{upstream_port}"]}},
        "routes": [{"name": "api", "match": {"prefix": "/"}, "backend": {"cluster": "up"}}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    traced = secrets.token_hex(16)
    gateway: GatewayProcess | None = None
    prometheus: PrometheusProcess | None = None
    try:
        gateway = start_gateway(path, port, admin_port, tmp_path)
        for trace_id, flags in ((traced, "01"), (secrets.token_hex(16), "00")):
            request = urllib.request.Request(
                f"{gateway.url}/x", headers={"traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"}
            )
            try:
                urllib.request.urlopen(request, timeout=10).close()
            except urllib.error.HTTPError as error:
                error.close()
        prometheus = start_prometheus(tmp_path, admin_port, features=("exemplar-storage",))
        url = prometheus.url
        wait_until(lambda: bool(_exemplar_trace_ids(url)), 60, 0.5, message="an exemplar in prometheus")
        assert _exemplar_trace_ids(url) == {traced}
    finally:
        if prometheus is not None:
            prometheus.stop()
        if gateway is not None:
            gateway.stop()
