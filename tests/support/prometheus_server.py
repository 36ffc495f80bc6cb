"""A real `prometheus` server (the Debian package) on loopback, scraping one gateway's admin port."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.support.processes import free_port, http_ok, wait_until

PROMETHEUS = shutil.which("prometheus")


@dataclass
class PrometheusProcess:
    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_prometheus(
    directory: Path, admin_port: int, rule_files: Sequence[str] = (), features: Sequence[str] = ()
) -> PrometheusProcess:
    """Scrape and evaluate every second; ready when `/-/ready` answers (its log: prometheus.log)."""
    assert PROMETHEUS is not None
    port = free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": list(rule_files),
        "scrape_configs": [
            {"job_name": "turnout", "static_configs": [{"targets": [f"127.0.0.1:{admin_port}"]}]}
        ],
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    with open(directory / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *(f"--enable-feature={feature}" for feature in features),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    prometheus = PrometheusProcess(proc, f"http://127.0.0.1:{port}")
    try:
        wait_until(lambda: http_ok(f"{prometheus.url}/-/ready"), 30, message="prometheus")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return prometheus
