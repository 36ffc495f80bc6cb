"""`bench/proxy.py --processes 1,2`: turnout with N gateway processes against nginx with N workers.

For each N, turnout runs as `turnout run --processes N` (N processes on one SO_REUSEPORT port under
the supervisor) and nginx with `worker_processes N`, both in front of the same upstream, measured by
the same load generator in the same run, taking turns at each concurrency. The CPU charged is the
whole process group's: the supervisor and every gateway process, or nginx's master and workers.

Pinning, per N, when taskset and enough CPUs allow: the proxy on the first N allowed CPUs, the
upstream and load generator on the rest. With only N CPUs (2 processes on a 2-core machine) the
client side shares the last proxy CPU: that run measures a proxy that competes with its own load,
and the table's pinning line says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import _nginx
import _turnout
from _procs import ChildFailed, Pinning, free_port, http_status, start_service
from _report import Outcome, Unavailable, render_tables
from _targets import READY_TIMEOUT_S, Bench, Target, start_upstream

# proxy.py's measure(bench, target, runner, concurrency), passed in: proxy.py imports this module.
Measure = Callable[[Bench, Target, Any, int], Outcome]


def pinning_for(processes: int) -> Pinning:
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if shutil.which("taskset") is None or len(cpus) < 2:
        return Pinning(None, None, "none (taskset missing or one CPU)")
    proxy = cpus[: min(processes, len(cpus))]
    client = cpus[len(proxy) :] or cpus[-1:]
    shared = " (shared with the proxy: not enough CPUs to keep them apart)" if not cpus[len(proxy) :] else ""
    proxy_text, client_text = ",".join(map(str, proxy)), ",".join(map(str, client))
    return Pinning(
        proxy_text,
        client_text,
        f"taskset: proxy on CPU {proxy_text}; upstream and load generator on CPU {client_text}{shared}",
    )


def _start_turnout(bench: Bench, processes: int, upstream_port: int) -> Target:
    turnout = bench.opts.turnout or _turnout.turnout_path()
    if turnout is None:
        raise ChildFailed("the turnout command is not installed (pip install -e .)")
    port, admin_port = free_port(), free_port()
    config_path = bench.workdir / f"turnout-x{processes}.yaml"
    config_path.write_text(_turnout.turnout_config(port, admin_port, upstream_port, None))
    argv = [*_turnout.turnout_argv(turnout, config_path), "--processes", str(processes), "--no-watch"]
    proc = start_service(
        bench.stack,
        bench.pinning.proxy(argv),
        bench.workdir / f"turnout-x{processes}.log",
        lambda: _turnout.turnout_ready(port, admin_port),
        f"turnout x{processes}",
        READY_TIMEOUT_S * max(1, processes),
    )
    return Target(f"turnout x{processes}", port, proc)


def _start_nginx(bench: Bench, workers: int, upstream_port: int) -> Target | Unavailable:
    nginx = _nginx.nginx_path()
    if nginx is None:
        return Unavailable("nginx is not installed", failed=False)
    port = free_port()
    prefix = bench.workdir / f"proxy-nginx-x{workers}"
    config = _nginx.proxy_config(prefix, port, upstream_port, bench.opts.access_log)
    _nginx.write_config(prefix, config.replace("worker_processes 1;", f"worker_processes {workers};", 1))
    proc = start_service(
        bench.stack,
        bench.pinning.proxy(_nginx.nginx_argv(nginx, prefix, _nginx.nginx_version(nginx))),
        bench.workdir / f"proxy-nginx-x{workers}.log",
        lambda: http_status(port) == 200,
        f"nginx x{workers}",
        READY_TIMEOUT_S,
    )
    return Target(f"nginx x{workers}", port, proc)


def ratios(runs: dict[int, dict[str, Outcome]], processes: tuple[int, ...]) -> list[str]:
    """The issue's targets, per concurrency: turnout xN over x1, turnout xN over nginx xN, p99s."""
    from _report import Measured

    lines = []
    top = max(processes)
    for concurrency, outcomes in runs.items():
        one, many, nginx = (outcomes.get(name) for name in ("turnout x1", f"turnout x{top}", f"nginx x{top}"))
        if isinstance(one, Measured) and isinstance(many, Measured) and top > 1:
            lines.append(
                f"c={concurrency}: turnout x{top} / turnout x1 req/s = {many.load.rps / one.load.rps:.2f}"
            )
        if isinstance(many, Measured) and isinstance(nginx, Measured):
            share = many.load.rps / nginx.load.rps
            lines.append(
                f"c={concurrency}: turnout x{top} / nginx x{top} req/s = {share:.2f}; "
                f"p99 {many.load.p99_ms:.2f} ms vs {nginx.load.p99_ms:.2f} ms "
                f"({many.load.p99_ms / nginx.load.p99_ms:.2f}x)"
            )
    return lines


def run_scaling(
    bench: Bench, processes: tuple[int, ...], choose_runner: Callable[..., Any], measure: Measure
) -> int:
    """Measure turnout xN and nginx xN for each N; print the tables and the ratios; 1 on a failure."""
    opts = bench.opts
    base = replace(bench, pinning=pinning_for(1))
    upstream_port, upstream_description = start_upstream(base)
    runs: dict[int, dict[str, Outcome]] = {c: {} for c in opts.concurrency}
    pinnings = []
    for count in processes:
        pinned = replace(bench, pinning=pinning_for(count))
        pinnings.append(f"x{count}: {pinned.pinning.description}")
        runner = choose_runner(opts, pinned.pinning, bench.chain)
        started: dict[str, Target | Unavailable] = {}
        for name, start in (("turnout", _start_turnout), ("nginx", _start_nginx)):
            try:
                started[f"{name} x{count}"] = start(pinned, count, upstream_port)
            except (ChildFailed, OSError, RuntimeError) as exc:
                started[f"{name} x{count}"] = Unavailable(
                    f"{name} x{count} did not start: {exc}", failed=True
                )
        for concurrency in opts.concurrency:
            for name, target in started.items():
                runs[concurrency][name] = (
                    target
                    if isinstance(target, Unavailable)
                    else measure(pinned, target, runner, concurrency)
                )
        for target in started.values():  # the next N gets the CPUs to itself
            if isinstance(target, Target) and target.proc is not None:
                target.proc.terminate()
                target.proc.wait(30)
    header = [
        f"process scaling: turnout --processes N against nginx worker_processes N; upstream "
        f"{upstream_description}; each run {opts.warmup_s:g}s warm-up, {opts.duration_s:g}s measured",
        *(f"pinning {line}" for line in pinnings),
        f"turnout's data path: {_turnout.data_path_mode()}",
    ]
    print(render_tables(runs, header), flush=True)
    for line in ratios(runs, processes):
        print(line, flush=True)
    failed = any(isinstance(o, Unavailable) and o.failed for per in runs.values() for o in per.values())
    return 1 if failed else 0
