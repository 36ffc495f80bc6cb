"""turnout as the proxy under test: its config, its command line, and its readiness check."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from _procs import http_status


def turnout_path() -> str | None:
    """The ``turnout`` command beside the running interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).with_name("turnout")
    if beside.is_file():
        return str(beside)
    return shutil.which("turnout")


def turnout_config(
    listen_port: int, admin_port: int, upstream_port: int, access_log_path: Path | None
) -> str:
    """The smallest config that proxies every path to one upstream, round robin, one route."""
    if access_log_path is None:
        access_log = "{enabled: false}"
    else:
        # A JSON string is a valid YAML double-quoted scalar, so any path is quoted safely.
        access_log = f"{{enabled: true, path: {json.dumps(str(access_log_path))}}}"
    return f"""listen: {{host: 127.0.0.1, port: {listen_port}}}
admin: {{host: 127.0.0.1, port: {admin_port}}}
access_log: {access_log}
clusters:
  up: {{endpoints: ["127.0.0.1:{upstream_port}"], balancer: round_robin}}
routes:
  - {{name: all, match: {{prefix: /}}, backend: {{cluster: up}}}}
"""


def turnout_argv(turnout: str, config_path: Path) -> list[str]:
    return [turnout, "run", "--config", str(config_path)]


def turnout_ready(listen_port: int, admin_port: int) -> bool:
    """Ready when the admin listener says so and a proxied request really reaches the upstream."""
    return http_status(admin_port, "/readyz") == 200 and http_status(listen_port, "/") == 200
