"""What dynamic batching buys gRPC ModelInfer calls: turnout with batching off and on, side by side.

    python bench/grpc_batching.py [--seconds 5] [--concurrency 32] [--gateway-cpu 0] [--models DIR]

A turnout worker serves the demo's `risk` model (version 1, 1 x 30 FP32 in) over gRPC; one turnout
process routes calls to it, through a plain route, or through a route with `batching` when the call
carries `x-batch: on` metadata. Closed-loop clients (each sends its next call when the last one is
answered) in this process run the same load three ways: direct to the worker, through turnout
unbatched, through turnout batched. Each line prints calls/s, p50, p99 and the upstream calls the
worker counted (its `turnout_worker_inferences_total`), so the last column shows how many client
calls one upstream call carried.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(ROOT)  # run as a script: the repository, not bench/, first on the path

import grpc  # noqa: E402

from inference_workers.grpc_codec import pb  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
# Calls before measuring: channels connect, lanes start, the interpreter's caches fill.
WARMUP_CALLS = 300
_INFERENCES = re.compile(
    r'^turnout_worker_inferences_total\{[^}]*model="risk"[^}]*outcome="success"[^}]*\} (\S+)$', re.M
)


def _request() -> bytes:
    request = pb.ModelInferRequest(model_name="risk", model_version="1", id="bench")
    request.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    request.raw_input_contents.append(b"\x00\x00\x80\x3f" * 30)
    return bytes(request.SerializeToString())


async def _closed_loop(
    target: str, concurrency: int, seconds: float, metadata: tuple[tuple[str, str], ...]
) -> tuple[float, list[float]]:
    """(calls per second, latencies in seconds) of `concurrency` clients calling back to back."""
    request = _request()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(WARMUP_CALLS // concurrency + 1):
            await asyncio.gather(*(call(request, metadata=metadata) for _ in range(concurrency)))
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def client() -> None:
            while (started := time.perf_counter()) < end:
                await call(request, metadata=metadata)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(latencies) / (time.perf_counter() - began), latencies


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(target: str, timeout: float = 60.0) -> None:
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    finally:
        channel.close()


def _upstream_calls(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        return sum(float(value) for value in _INFERENCES.findall(response.read().decode()))


def _gateway_config(workdir: Path, worker_grpc: int, grpc_port: int) -> Path:
    config = workdir / "gateway.yaml"
    config.write_text(
        f"""listen: {{host: 127.0.0.1, port: {_free_port()}, grpc_port: {grpc_port}}}
admin: {{host: 127.0.0.1, port: {_free_port()}}}
access_log: {{enabled: false}}
clusters:
  risk: {{endpoints: ["127.0.0.1:{worker_grpc}"]}}
routes:
  - name: batched
    match: {{model: risk, headers: {{x-batch: "on"}}}}
    backend: {{cluster: risk}}
    filters: [{{batching: {{max_batch_size: 64, max_queue_delay: 2ms}}}}]
  - {{name: plain, match: {{model: risk}}, backend: {{cluster: risk}}}}
"""
    )
    return config


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--gateway-cpu", type=int, default=None, help="pin the gateway to this CPU")
    parser.add_argument("--models", type=Path, default=None, help="the demo models (built when absent)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = Path(scratch)
        models = args.models or workdir / "models"
        from inference_workers.examples.build_models import build

        build(models)
        http_port, worker_grpc, grpc_port = _free_port(), _free_port(), _free_port()
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "inference_workers.worker", "--model-repository", str(models)),
                *("--http-port", str(http_port), "--grpc-port", str(worker_grpc), "--device", "cpu"),
                *("--models", "risk"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        command = [
            sys.executable,
            "-m",
            "gateway.cli",
            "run",
            "--config",
            str(_gateway_config(workdir, worker_grpc, grpc_port)),
        ]
        if args.gateway_cpu is not None:
            command = ["taskset", "-c", str(args.gateway_cpu), *command]
        gateway = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_ready(f"127.0.0.1:{worker_grpc}")
            _wait_ready(f"127.0.0.1:{grpc_port}")
            c = args.concurrency
            runs = (
                ("direct", f"127.0.0.1:{worker_grpc}", ()),
                ("unbatched", f"127.0.0.1:{grpc_port}", ()),
                ("batched", f"127.0.0.1:{grpc_port}", (("x-batch", "on"),)),
            )
            rates = {}
            for name, target, metadata in runs:
                before = _upstream_calls(http_port)
                rate, latencies = asyncio.run(_closed_loop(target, c, args.seconds, metadata))
                upstream = _upstream_calls(http_port) - before
                calls = WARMUP_CALLS // c * c + c + len(latencies)  # warm-up rounds included
                cuts = statistics.quantiles(latencies, n=100)
                rates[name] = rate
                print(
                    f"{name:<10} c={c:<3} {rate:>7.0f} calls/s   p50 {cuts[49] * 1000:7.2f} ms   "
                    f"p99 {cuts[98] * 1000:7.2f} ms   upstream calls {upstream:>6.0f} "
                    f"({calls / max(upstream, 1):.1f} client calls each)"
                )
            print(f"batched / unbatched calls/s: {rates['batched'] / rates['unbatched']:.2f}")
        finally:
            for process in (gateway, worker):
                process.terminate()
            for process in (gateway, worker):
                process.wait(10)


if __name__ == "__main__":
    main()
