"""Starting what the benchmark measures: the shared upstream, and each proxy in front of it."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import _nginx
import _turnout
from _chains import Chain
from _options import Options
from _procs import ChildFailed, Pinning, free_port, http_status, start_service
from _report import Unavailable
from _scenario import BEST_CASE, Scenario

# Start-up bound per server: nginx is up in milliseconds, turnout imports its whole stack, which can
# take several seconds on a busy two-core machine; beyond this something is wrong, not slow.
READY_TIMEOUT_S = 30.0
UPSTREAM_SCRIPT = Path(__file__).resolve().with_name("upstream.py")


@dataclass(frozen=True, slots=True)
class Bench:
    """What every start needs: the options, a private temp dir, the pinning, who tears down, and the
    filter chain (which also shapes every request sent)."""

    opts: Options
    stack: contextlib.ExitStack
    workdir: Path
    pinning: Pinning
    chain: Chain
    scenario: Scenario = BEST_CASE


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """One row of the tables: ``kind`` is direct, nginx or turnout; ``chain`` is turnout's filters."""

    label: str
    kind: str
    chain: Chain | None = None
    pure_python: bool = False
    """turnout with its data path run from source, not compiled (TURNOUT_PURE_PYTHON)."""


def turnout_label(chain: Chain) -> str:
    return "turnout" if not chain.filters else f"turnout+{chain.name}"


def plan_targets(opts: Options, chain: Chain, no_filters: Chain) -> list[TargetSpec]:
    """The rows to measure, in order: turnout is one row, or two (no filters, then the chain) when
    comparing chains."""
    specs: list[TargetSpec] = []
    for name in opts.targets:
        if name == "turnout-py":
            specs.append(TargetSpec(name, "turnout", chain, pure_python=True))
            continue
        if name != "turnout":
            specs.append(TargetSpec(name, name))
            continue
        if opts.compare_chain:
            specs.append(TargetSpec(turnout_label(no_filters), "turnout", no_filters))
        specs.append(TargetSpec(turnout_label(chain), "turnout", chain))
    return specs


@dataclass(frozen=True, slots=True)
class Target:
    """Where the load goes; ``proc`` is the proxy (None for direct), whose group's CPU is charged."""

    name: str
    port: int
    proc: subprocess.Popen[bytes] | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


def start_upstream(bench: Bench, index: int = 0) -> tuple[int, str]:
    """Start the fixed-response upstream on the client CPU; return its port and a description.
    ``index`` tells apart the files of several upstreams."""
    suffix = f"-{index}" if index else ""
    port = free_port()
    nginx = _nginx.nginx_path()
    if nginx is not None and bench.opts.upstream in ("auto", "nginx"):
        version = _nginx.nginx_version(nginx)
        prefix = bench.workdir / f"upstream-nginx{suffix}"
        _nginx.write_config(prefix, _nginx.upstream_config(prefix, port))
        argv = _nginx.nginx_argv(nginx, prefix, version)
        description = f"nginx {'.'.join(map(str, version))} returning a fixed 200 (2-byte body)"
    else:
        argv = [sys.executable, str(UPSTREAM_SCRIPT), "--port", str(port)]
        description = "bench/upstream.py (uvloop + httptools, fixed 200, 2-byte body)"
    start_service(
        bench.stack,
        bench.pinning.client(argv),
        bench.workdir / f"upstream{suffix}.log",
        lambda: http_status(port) == 200,
        "the upstream",
        READY_TIMEOUT_S,
    )
    return port, description


def start_upstreams(bench: Bench) -> tuple[int, tuple[int, ...], str]:
    """The scenario's upstreams, each started as start_upstream does: the first port, the others'
    ports, and a description."""
    port, description = start_upstream(bench)
    extra = tuple(start_upstream(bench, index)[0] for index in range(1, bench.scenario.upstreams))
    if extra:
        description = f"{len(extra) + 1} x {description}, round robin"
    return port, extra, description


def _start_nginx_proxy(bench: Bench, upstream_port: int, extra: Sequence[int] = ()) -> Target | Unavailable:
    nginx = _nginx.nginx_path()
    if nginx is None:
        return Unavailable("nginx is not installed", failed=False)
    port = free_port()
    prefix = bench.workdir / "proxy-nginx"
    _nginx.write_config(
        prefix,
        _nginx.proxy_config(
            prefix, port, upstream_port, bench.opts.access_log, extra, json_log=bench.scenario.access_log
        ),
    )
    proc = start_service(
        bench.stack,
        bench.pinning.proxy(_nginx.nginx_argv(nginx, prefix, _nginx.nginx_version(nginx))),
        bench.workdir / "proxy-nginx.log",
        lambda: http_status(port) == 200,
        "nginx (proxy)",
        READY_TIMEOUT_S,
    )
    return Target("nginx", port, proc)


def _start_turnout(
    bench: Bench, spec: TargetSpec, upstream_port: int, extra: Sequence[int] = ()
) -> Target | Unavailable:
    turnout = bench.opts.turnout or _turnout.turnout_path()
    if turnout is None:
        return Unavailable("the turnout command is not installed (pip install -e .)", failed=True)
    filters = spec.chain.filters if spec.chain is not None else ()
    port, admin_port = free_port(), free_port()
    stem = spec.label.replace("+", "-")
    access_log_path = bench.workdir / f"{stem}-access.log" if bench.opts.access_log else None
    config_path = bench.workdir / f"{stem}.yaml"
    config_path.write_text(
        _turnout.turnout_config(port, admin_port, upstream_port, access_log_path, filters, extra)
    )
    headers = bench.chain.headers
    proc = start_service(
        bench.stack,
        bench.pinning.proxy(_turnout.turnout_argv(turnout, config_path, spec.pure_python)),
        bench.workdir / f"{stem}.log",
        lambda: _turnout.turnout_ready(port, admin_port, headers),
        spec.label,
        READY_TIMEOUT_S,
    )
    return Target(spec.label, port, proc)


def start_target(
    bench: Bench, spec: TargetSpec, upstream_port: int, extra_upstream_ports: Sequence[int] = ()
) -> Target | Unavailable:
    """Start the proxy ``spec`` names in front of the upstream; a failure is an outcome, not a crash."""
    try:
        if spec.kind == "direct":
            return Target(spec.label, upstream_port, None)
        if spec.kind == "nginx":
            return _start_nginx_proxy(bench, upstream_port, extra_upstream_ports)
        return _start_turnout(bench, spec, upstream_port, extra_upstream_ports)
    except (ChildFailed, OSError, RuntimeError) as exc:
        return Unavailable(f"{spec.label} did not start: {exc}", failed=True)
