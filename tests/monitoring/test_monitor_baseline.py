"""`turnout monitor baseline MODEL --from 1h` against a real gateway and model server: the rows the
gateway kept become the model's reference at once, the file it writes is a reference the config can
name, and drift is then measured against that traffic; bad calls get clear errors."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
import yaml

from plugins.monitor.reference import load
from tests.monitoring._exchanges import oip_request
from tests.support.processes import ROOT, GatewayProcess, free_port, http_ok, start_gateway, wait_until

WIDTH = 4
ROWS_PER_REQUEST = 5
# The monitor's background task studies each sample within a loop turn (flush_interval 0s); a
# loaded machine may take seconds.
SETTLE_TIMEOUT_S = 60.0


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
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
        monitor = {
            "sample_rate": 1.0,
            "flush_interval": "0s",
            "min_samples": 100,
            "window": 200,
            "models": {"risk": {}},  # no reference file: only live traffic can give one
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
                }
            ],
        }
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        process = start_gateway(path, port, admin_port, tmp_path)
        yield process
    finally:
        if process is not None:
            process.stop()
        upstream.terminate()
        upstream.wait(10)


def _send(gateway: GatewayProcess, rng: np.random.Generator, requests: int, shift: float) -> None:
    """`requests` inferences of ROWS_PER_REQUEST rows, feature 2 moved by `shift`."""
    for _ in range(requests):
        rows = rng.normal(size=(ROWS_PER_REQUEST, WIDTH))
        rows[:, 2] += shift
        request = urllib.request.Request(
            f"{gateway.url}/v2/models/risk/infer", oip_request(rows), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200


def _report(gateway: GatewayProcess) -> dict[str, Any]:
    with urllib.request.urlopen(f"{gateway.admin_url}/admin/monitoring/risk", timeout=10) as answer:
        report: dict[str, Any] = orjson.loads(answer.read())
    return report


def _counted(gateway: GatewayProcess, rows: int) -> None:
    wait_until(lambda: _report(gateway)["rows"] >= rows, SETTLE_TIMEOUT_S, message=f"{rows} rows counted")


def _cli(gateway: GatewayProcess, *args: str) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "monitor",
        "baseline",
        *args,
        "--admin",
        gateway.admin_url,
    ]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_a_baseline_from_live_traffic_becomes_the_reference_and_a_file_the_config_can_name(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    rng = np.random.default_rng(5)
    _send(gateway, rng, 60, shift=3.0)  # after a deploy, feature 2 runs three deviations higher
    _counted(gateway, 300)
    assert _report(gateway)["reference"] is None
    out = tmp_path / "risk-baseline.csv"
    done = _cli(gateway, "risk", "--from", "1h", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "300 rows (of 300 seen) written" in done.stdout
    reference = load(out, 10)  # what the config's `reference: risk-baseline.csv` would read
    assert reference.rows == 300 and reference.width == WIDTH
    assert reference.high[2] > 3.0 > reference.low[2]
    report = _report(gateway)
    assert "live traffic" in report["reference"]["source"] and report["reference"]["rows"] == 300
    # Traffic like the baseline's is no drift; traffic like before the deploy is, in feature 2 only.
    # (Below the alert level PSI's noise on a few hundred rows may reach warn, so: alert or not.)
    _send(gateway, rng, 50, shift=3.0)
    _counted(gateway, 250)
    assert "alert" not in {feature["state"] for feature in _report(gateway)["features"]}
    _send(gateway, rng, 50, shift=0.0)
    _counted(gateway, 500)
    alerts = {feature["index"] for feature in _report(gateway)["features"] if feature["state"] == "alert"}
    assert alerts == {2}


def test_baselines_that_cannot_be_made_are_refused_with_reasons(gateway: GatewayProcess) -> None:
    done = _cli(gateway, "risk", "--from", "1h")
    assert done.returncode == 1 and "409" in done.stderr and "min_samples (100)" in done.stderr
    done = _cli(gateway, "risk", "--from", "soon")
    assert done.returncode == 1 and "400" in done.stderr and "invalid duration" in done.stderr
    done = _cli(gateway, "other", "--from", "1h")
    assert done.returncode == 1 and "404" in done.stderr and "no route monitors model 'other'" in done.stderr
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{gateway.admin_url}/admin/monitoring/risk/rows?from=0s", timeout=10)
    assert refused.value.code == 400
    refused.value.close()
