"""turnout as the proxy under test: its config, its command line, and its readiness check."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from _procs import http_status


def turnout_path() -> str | None:
    """The ``turnout`` command beside the running interpreter (the project's venv), else on PATH."""
    beside = Path(sys.executable).with_name("turnout")
    if beside.is_file():
        return str(beside)
    return shutil.which("turnout")


def turnout_config(
    listen_port: int,
    admin_port: int,
    upstream_port: int,
    access_log_path: Path | None,
    filters: Sequence[Mapping[str, Any]] = (),
    extra_upstream_ports: Sequence[int] = (),
) -> str:
    """The smallest config that proxies every path to one upstream (and the ``extra_upstream_ports``),
    round robin, one route.

    ``filters`` (the route's filter chain, as config) are written only when there are any.
    """
    if access_log_path is None:
        access_log = "{enabled: false}"
    else:
        # A JSON string is a valid YAML double-quoted scalar, so any path is quoted safely.
        access_log = f"{{enabled: true, path: {json.dumps(str(access_log_path))}}}"
    # JSON is valid YAML flow syntax, so the filters (secrets included) need no escaping of their own.
    endpoints = json.dumps([f"127.0.0.1:{port}" for port in (upstream_port, *extra_upstream_ports)])
    route_filters = f", filters: {json.dumps(list(filters))}" if filters else ""
    return f"""listen: {{host: 127.0.0.1, port: {listen_port}}}
admin: {{host: 127.0.0.1, port: {admin_port}}}
access_log: {access_log}
clusters:
  up: {{endpoints: {endpoints}, balancer: round_robin}}
routes:
  - {{name: all, match: {{prefix: /}}, backend: {{cluster: up}}{route_filters}}}
"""


def turnout_argv(turnout: str, config_path: Path, pure_python: bool = False) -> list[str]:
    """`pure_python`: run the data path from source even where it is compiled (env execs turnout,
    so the process measured is still turnout's own)."""
    argv = [turnout, "run", "--config", str(config_path)]
    return ["env", "TURNOUT_PURE_PYTHON=1", *argv] if pure_python else argv


def data_path_mode() -> str:
    """How this install runs turnout's data path: "compiled" (mypyc) or "pure Python"."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.append(root)
    try:
        from gateway.core.native import data_path_mode as mode
    except ImportError:
        return "unknown (turnout is not importable here)"
    return mode()


def turnout_ready(listen_port: int, admin_port: int, headers: Sequence[tuple[str, str]] = ()) -> bool:
    """Ready when the admin listener says so and a proxied request (with ``headers``, which the
    route's filters may need) really reaches the upstream."""
    return http_status(admin_port, "/readyz") == 200 and http_status(listen_port, "/", headers) == 200
