"""The monitor sees the answers the gateway sends, through real processes on loopback: what its
sketches hold matches what the model answered, the client's bytes are the model's bytes, and an
answer too long to copy is skipped and counted while the client still gets all of it."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from gateway.core.context import ANSWER_COPY_MAX_BYTES
from tests.monitoring._exchanges import oip_request
from tests.support.processes import ROOT, GatewayProcess, free_port, http_ok, start_gateway, wait_until

WIDTH = 3
ROWS_PER_REQUEST = 4
REQUESTS = 20
# The monitor's background task studies each sample within a loop turn (flush_interval 0s); a
# loaded machine may take seconds.
SETTLE_TIMEOUT_S = 60.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[GatewayProcess, str]]:
    """A gateway monitoring every answer of model `risk`, and the model server's own address."""
    upstream_port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.oip_upstream", "--port", str(upstream_port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    process: GatewayProcess | None = None
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{upstream_port}/healthz"), 30, message="upstream")
        port, admin_port = free_port(), free_port()
        monitor = {"sample_rate": 1.0, "flush_interval": "0s", "models": {"risk": {}}}
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
                }
            ],
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        process = start_gateway(path, port, admin_port, tmp_path)
        yield process, f"http://127.0.0.1:{upstream_port}"
    finally:
        if process is not None:
            process.stop()
        upstream.terminate()
        upstream.wait(10)


def _post(base: str, body: bytes, **headers: str) -> bytes:
    request = urllib.request.Request(
        f"{base}/v2/models/risk/infer", body, {"content-type": "application/json", **headers}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200
        data: bytes = answer.read()
        return data


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as answer:
        data: bytes = answer.read()
        return data


def _report(gateway: GatewayProcess) -> dict[str, Any]:
    report: dict[str, Any] = orjson.loads(_get(f"{gateway.admin_url}/admin/monitoring/risk"))
    return report


def _samples(gateway: GatewayProcess, result: str) -> float:
    prefix = f'turnout_monitor_samples_total{{result="{result}",route="risk"}} '
    for line in _get(f"{gateway.admin_url}/metrics").decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_the_sketches_hold_the_answers_the_client_got(stack: tuple[GatewayProcess, str]) -> None:
    gateway, upstream = stack
    rng = np.random.default_rng(3)
    firsts: list[float] = []
    for _ in range(REQUESTS):
        rows = rng.normal(loc=10.0, size=(ROWS_PER_REQUEST, WIDTH))
        body = oip_request(rows)
        through = _post(gateway.url, body, **{"x-echo": "1"})
        assert through == _post(upstream, body, **{"x-echo": "1"})  # the model's bytes, untouched
        firsts.extend(rows[:, 0].tolist())
    rows_seen = REQUESTS * ROWS_PER_REQUEST
    wait_until(lambda: _report(gateway)["rows"] >= rows_seen, SETTLE_TIMEOUT_S, message="rows counted")
    outputs = _report(gateway)["outputs"]
    echo = outputs["echo"]
    assert echo["kind"] == "values" and echo["rows"] == rows_seen
    assert echo["mean"] == pytest.approx(float(np.mean(firsts)))
    assert echo["min"] == pytest.approx(min(firsts)) and echo["max"] == pytest.approx(max(firsts))
    probabilities = outputs["probabilities"]
    assert probabilities["rows"] == rows_seen
    assert probabilities["confidence_mean"] == pytest.approx(0.8)
    assert _samples(gateway, "queued") == REQUESTS and _samples(gateway, "skipped") == 0


def test_too_long_an_answer_reaches_the_client_and_is_skipped(stack: tuple[GatewayProcess, str]) -> None:
    gateway, upstream = stack
    body = oip_request(np.ones((1, WIDTH)))
    pad = str(ANSWER_COPY_MAX_BYTES + 1)
    through = _post(gateway.url, body, **{"x-pad": pad})
    assert len(through) > ANSWER_COPY_MAX_BYTES and through == _post(upstream, body, **{"x-pad": pad})
    _post(gateway.url, body)  # a short one after it is studied as usual
    wait_until(lambda: _report(gateway)["rows"] >= 1, SETTLE_TIMEOUT_S, message="the short one counted")
    assert _samples(gateway, "skipped") == 1 and _samples(gateway, "queued") == 1
