"""Mesh decisions: ext_proc, ext_authz and RLS answers per second from one turnout core.

    python bench/mesh.py [--seconds 5] [--concurrency 32] [--json]

A real `turnout run` process, pinned to one CPU, serves the mesh port for a route with an API key,
a rate limit, an A/B experiment and an endpoint pick (every decision runs all four). This process,
pinned to another CPU when there is one, plays Envoy with grpcio clients:

- ext_proc, header-only, closed loop: `--concurrency` streams at a time, one stream per request as
  Envoy opens them; decisions per second.
- ext_proc at a fixed 1,000 decisions/s (open loop, a new stream every millisecond): p50 and p99 of
  the time from opening the stream to the answer to the request headers.
- ext_authz Check and RLS ShouldRateLimit, closed loop: checks per second.
- In process, without gRPC: the decision alone (parse ProcessingRequest, filters, arm, endpoint,
  build and serialize the answer), decisions per second on this core.

Targets (issue 19): >= 5,000 ext_proc header-only decisions/s on one core; p99 <= 2 ms at 1,000/s.
The Python gRPC client costs about as much per call as the server, so on a small machine the
closed-loop figures measure the pair; the in-process figure is the server's own ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from envoy.service.auth.v3 import external_auth_pb2_grpc  # noqa: E402
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc  # noqa: E402
from envoy.service.ratelimit.v3 import rls_pb2_grpc  # noqa: E402

from tests.mesh.mesh_support import KEY_K1_SHA256, request_headers  # noqa: E402
from tests.mesh.test_mesh_authz_rls import check_request, limit_request  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

# The paced run's rate, as the issue states its latency target.
PACED_RATE = 1000
# Requests before measuring: imports, caches and connections reach their steady state.
WARMUP = 500


def config(tmp: Path) -> dict[str, Any]:
    keys = {"keys": [{"sha256": KEY_K1_SHA256, "principal": "alice", "scopes": ["infer"]}]}
    return {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "state": {"backend": "memory", "sqlite_path": str(tmp / "events.db")},
        "clusters": {
            "risk-v1": {"endpoints": ["127.0.0.1:8011", "127.0.0.2:8011"], "balancer": "least_request"},
            "risk-v2": {"endpoints": ["127.0.0.1:8012"]},
        },
        "experiments": {
            "risk-ab": {
                "kind": "ab",
                "unit": ["header:x-user-id"],
                "arms": {
                    "control": {"cluster": "risk-v1", "weight": 50},
                    "treatment": {"cluster": "risk-v2", "weight": 50},
                },
            }
        },
        "routes": [
            {
                "name": "risk",
                "match": {"prefix": "/"},
                "backend": {"experiment": "risk-ab"},
                "filters": [
                    {"auth_apikey": keys},
                    # High enough never to refuse: the benchmark measures the check, not refusals.
                    {"rate_limit": {"limits": [{"key": "principal", "rate": "1000000/s", "burst": 1000000}]}},
                ],
            }
        ],
        "mesh": {"host": "127.0.0.1", "port": free_port()},
    }


def headers_message(index: int) -> Any:
    return request_headers("/v2/models/risk/infer", [("x-api-key", "k1"), ("x-user-id", f"u{index % 1000}")])


async def one_decision(stub: Any, message: Any) -> float:
    began = time.perf_counter()
    call = stub.Process()
    await call.write(message)
    answer = await call.read()
    elapsed = time.perf_counter() - began
    assert answer.WhichOneof("response") == "request_headers", answer
    await call.done_writing()
    await call.read()  # the end of the stream
    return elapsed


async def closed_loop(work: Any, seconds: float, concurrency: int) -> float:
    done = 0
    stop = time.perf_counter() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        index = offset
        while time.perf_counter() < stop:
            await work(index)
            index += concurrency
            done += 1

    began = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done / (time.perf_counter() - began)


async def paced(stub: Any, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    tasks = []
    began = time.perf_counter()
    for index in range(int(seconds * PACED_RATE)):
        delay = began + index / PACED_RATE - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one_decision(stub, headers_message(index))))
    latencies = sorted(await asyncio.gather(*tasks))
    return {
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "achieved_per_s": len(latencies) / (time.perf_counter() - began),
    }


async def over_grpc(port: int, seconds: float, concurrency: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), 30)
        ext_proc = external_processor_pb2_grpc.ExternalProcessorStub(channel)
        check = external_auth_pb2_grpc.AuthorizationStub(channel).Check
        should = rls_pb2_grpc.RateLimitServiceStub(channel).ShouldRateLimit
        for index in range(WARMUP):
            await one_decision(ext_proc, headers_message(index))
        authz = check_request("/v2/models/risk/infer", {"x-api-key": "k1"})
        limit = limit_request("risk", [("principal", "alice")])
        return {
            "ext_proc_decisions_per_s": await closed_loop(
                lambda i: one_decision(ext_proc, headers_message(i)), seconds, concurrency
            ),
            "ext_proc_paced": await paced(ext_proc, seconds),
            "ext_authz_checks_per_s": await closed_loop(lambda i: check(authz), seconds, concurrency),
            "rls_checks_per_s": await closed_loop(lambda i: should(limit), seconds, concurrency),
        }


async def in_process(tmp: Path, seconds: float) -> float:
    """The decision alone: bytes in, bytes out, through the same objects the server uses."""
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    from gateway.loading import load_gateway_config
    from gateway.mesh.ext_proc import _Stream
    from gateway.server import Gateway

    document = config(tmp)
    del document["mesh"]
    path = tmp / "inprocess.yaml"
    path.write_text(yaml.safe_dump(document))
    gateway = Gateway(load_gateway_config(path), path)
    await gateway.start()
    try:
        raw = [headers_message(i).SerializeToString() for i in range(1000)]
        runtime = gateway.runtime
        done = 0
        began = time.perf_counter()
        stop = began + seconds
        while time.perf_counter() < stop:
            for message in raw[:100]:
                stream = _Stream(runtime, {}, 1 << 20, frozenset())
                answer = await stream.answer(pb.ProcessingRequest.FromString(message))
                answer.SerializeToString()
                stream.end(200, "")
            done += 100
        return done / (time.perf_counter() - began)
    finally:
        await gateway.shutdown(drain_timeout=1.0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        document = config(tmp)
        path = tmp / "mesh.yaml"
        path.write_text(yaml.safe_dump(document))
        server_cpu = {cpus[0]}
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gateway.cli",
                "run",
                "--config",
                str(path),
                "--no-watch",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            preexec_fn=lambda: os.sched_setaffinity(0, server_cpu),
        )
        try:
            if len(cpus) > 1:
                os.sched_setaffinity(0, set(cpus[1:]))
            results = asyncio.run(over_grpc(document["mesh"]["port"], args.seconds, args.concurrency))
        finally:
            server.terminate()
            server.wait(10)
        results["in_process_decisions_per_s"] = asyncio.run(in_process(tmp, args.seconds))
    results["server_cpus"] = 1
    results["client_cpus"] = max(1, len(cpus) - 1)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
