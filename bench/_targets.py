"""Starting what the benchmark measures: the shared upstream, and each proxy in front of it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import _nginx
import _turnout
from _options import Options
from _procs import ChildFailed, Pinning, free_port, http_status, start_service
from _report import Unavailable

# Start-up bound per server: nginx is up in milliseconds, turnout imports its whole stack, which can
# take several seconds on a busy two-core machine; beyond this something is wrong, not slow.
READY_TIMEOUT_S = 30.0
UPSTREAM_SCRIPT = Path(__file__).resolve().with_name("upstream.py")


@dataclass(frozen=True, slots=True)
class Bench:
    """What every start needs: the options, a private temp dir, the pinning, and who tears down."""

    opts: Options
    stack: contextlib.ExitStack
    workdir: Path
    pinning: Pinning


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes; ``proc`` is the proxy (None for direct), whose group's CPU is charged."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def start_upstream(bench: Bench) -> tuple[int, str]:
    """Start the fixed-response upstream on the client CPU; return its port and a description."""
    port = free_port()
    nginx = _nginx.nginx_path()
    if nginx is not None and bench.opts.upstream in ("auto", "nginx"):
        version = _nginx.nginx_version(nginx)
        prefix = bench.workdir / "upstream-nginx"
        _nginx.write_config(prefix, _nginx.upstream_config(prefix, port))
        argv = _nginx.nginx_argv(nginx, prefix, version)
        description = f"nginx {'.'.join(map(str, version))} returning a fixed 200 (2-byte body)"
    else:
        argv = [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(port)]
        description = "bench/upstream.py (uvloop + httptools, fixed 200, 2-byte body)"
    start_service(
        bench.stack,
        bench.pinning.client(argv),
        bench.workdir / "upstream.log",
        lambda: http_status(port) == 200,
        "the upstream",
        READY_TIMEOUT_S,
    )
    return port, description


def _start_nginx_proxy(bench: Bench, upstream_port: int) -> Target | Unavailable:
    nginx = _nginx.nginx_path()
    if nginx is None:
        return Unavailable("nginx is not installed", failed=False)
    port = free_port()
    prefix = bench.workdir / "proxy-nginx"
    _nginx.write_config(prefix, _nginx.proxy_config(prefix, port, upstream_port, bench.opts.access_log))
    proc = start_service(
        bench.stack,
        bench.pinning.proxy(_nginx.nginx_argv(nginx, prefix, _nginx.nginx_version(nginx))),
        bench.workdir / "proxy-nginx.log",
        lambda: http_status(port) == 200,
        "nginx (proxy)",
        READY_TIMEOUT_S,
    )
    return Target("nginx", port, proc)


def _start_turnout(bench: Bench, upstream_port: int) -> Target | Unavailable:
    turnout = bench.opts.turnout or _turnout.turnout_path()
    if turnout is None:
        return Unavailable("the turnout command is not installed (pip install -e .)", failed=True)
    port, admin_port = free_port(), free_port()
    access_log_path = bench.workdir / "turnout-access.log" if bench.opts.access_log else None
    config_path = bench.workdir / "turnout.yaml"
    config_path.write_text(_turnout.turnout_config(port, admin_port, upstream_port, access_log_path))
    proc = start_service(
        bench.stack,
        bench.pinning.proxy(_turnout.turnout_argv(turnout, config_path)),
        bench.workdir / "turnout.log",
        lambda: _turnout.turnout_ready(port, admin_port),
        "turnout",
        READY_TIMEOUT_S,
    )
    return Target("turnout", port, proc)


def start_target(bench: Bench, name: str, upstream_port: int) -> Target | Unavailable:
    """Start the proxy called ``name`` in front of the upstream; a failure is an outcome, not a crash."""
    if name == "direct":
        return Target("direct", upstream_port, None)
    start = _start_nginx_proxy if name == "nginx" else _start_turnout
    try:
        return start(bench, upstream_port)
    except (ChildFailed, OSError, RuntimeError) as exc:
        return Unavailable(f"{name} did not start: {exc}", failed=True)
