"""Mesh decisions: ext_proc, ext_authz and RLS answers per second from one turnout core.

    python bench/mesh.py [--seconds 5] [--concurrency 32] [--json]

A real `turnout run` process, pinned to the first allowed CPU, serves the mesh port for a route
with an API key, a rate limit, an A/B experiment and an endpoint pick (every decision runs all
four, and records the exposure). This process, pinned to the other CPUs when there are any, plays
Envoy with `_grpc_load.py`: one HTTP/2 connection, one stream per request as Envoy opens them,
frames pre-encoded, so the load costs a small fraction of what it measures (its CPU is printed).

- ext_proc, header-only, closed loop: `--concurrency` streams in flight; decisions per second, and
  the server's CPU seconds per decision (from /proc: what the figure would be on a core of its
  own, whatever else shares it; "per core-second" is its inverse).
- ext_proc at a fixed 1,000 decisions/s (open loop, a new stream every millisecond): p50 and p99
  of the time from sending the stream to its answer.
- Both on the mesh port's own transport and on grpcio's server, side by side in one run: a
  connection that opens with an ADS call is spliced to grpcio (gateway/mesh/front.py), so the
  same load with such a call left open on stream 1 measures grpcio's ExternalProcessor.
- ext_authz Check and RLS ShouldRateLimit, closed loop: checks per second.
- The floor under that latency, in the same run: a process that only echoes, pinned to the server's
  CPU and paced alike (p50 and p99 of the echo): what the machine's scheduling and other jobs alone
  add, whatever the server does.
- In process, without a transport: the decision alone (parse ProcessingRequest, filters, arm,
  endpoint, build and serialize the answer), decisions per second on this core, and the CPU time
  of each (p50, p99, max), which no other job's load can inflate.

Targets (issue 19): >= 5,000 ext_proc header-only decisions/s on one core; p99 <= 2 ms at 1,000/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _grpc_load
import grpc
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckResponse
from envoy.service.ext_proc.v3.external_processor_pb2 import ProcessingResponse
from envoy.service.ratelimit.v3.rls_pb2 import RateLimitResponse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from tests.mesh.mesh_support import KEY_K1_SHA256, request_headers  # noqa: E402
from tests.mesh.test_mesh_authz_rls import check_request, limit_request  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

# The paced run's rate, as the issue states its latency target.
PACED_RATE = 1000
HOST = "127.0.0.1"
PROCESS = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
CHECK = "/envoy.service.auth.v3.Authorization/Check"
SHOULD_RATE_LIMIT = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


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


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads (proc(5): utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def is_decision(message: bytes) -> bool:
    return bool(ProcessingResponse.FromString(message).WhichOneof("response") == "request_headers")


async def ext_proc(
    port: int, server: int, seconds: float, concurrency: int, opening: str | None
) -> dict[str, Any]:
    messages = [headers_message(i).SerializeToString() for i in range(1000)]
    common: dict[str, Any] = {"sample": 50, "check": is_decision, "opening": opening}
    await _grpc_load.closed_loop(HOST, port, PROCESS, messages, seconds=1, concurrency=concurrency, **common)
    began, server_began, own_began = time.perf_counter(), cpu_seconds(server), cpu_seconds(os.getpid())
    run = await _grpc_load.closed_loop(
        HOST, port, PROCESS, messages, seconds=seconds, concurrency=concurrency, **common
    )
    wall = time.perf_counter() - began
    server_cpu = cpu_seconds(server) - server_began
    closed = {
        "decisions_per_s": round(run.per_second),
        "server_cpu_us_per_decision": round(server_cpu / max(1, run.answered) * 1e6, 1),
        "decisions_per_server_core_second": round(run.answered / server_cpu) if server_cpu else None,
        "server_cpu_busy": round(server_cpu / wall, 2),
        "load_generator_cpu_busy": round((cpu_seconds(os.getpid()) - own_began) / wall, 2),
        "errors": run.errors + run.wrong,
    }
    paced = await _grpc_load.paced(HOST, port, PROCESS, messages, seconds=seconds, rate=PACED_RATE, **common)
    return {
        "closed_loop": closed,
        "paced": {
            "rate_per_s": PACED_RATE,
            "achieved_per_s": round(paced.per_second),
            "p50_ms": round(paced.percentile_ms(0.50), 2),
            "p99_ms": round(paced.percentile_ms(0.99), 2),
            "errors": paced.errors + paced.wrong,
        },
    }


def is_allowed(message: bytes) -> bool:
    return bool(CheckResponse.FromString(message).status.code == 0)  # google.rpc OK: a valid key


def is_under_limit(message: bytes) -> bool:
    return bool(RateLimitResponse.FromString(message).overall_code == RateLimitResponse.OK)


async def checks(port: int, seconds: float, concurrency: int) -> dict[str, float]:
    authz = [check_request("/v2/models/risk/infer", {"x-api-key": "k1"}).SerializeToString()]
    limit = [limit_request("risk", [("principal", "alice")]).SerializeToString()]
    results: dict[str, float] = {}
    for name, path, messages, right in (
        ("ext_authz", CHECK, authz, is_allowed),
        ("rls", SHOULD_RATE_LIMIT, limit, is_under_limit),
    ):
        run = await _grpc_load.closed_loop(
            HOST, port, path, messages, seconds=seconds, concurrency=concurrency, sample=50, check=right
        )
        results[f"{name}_checks_per_s"] = round(run.per_second)
        results[f"{name}_errors"] = run.errors + run.wrong

    return results


async def over_the_wire(port: int, server: int, seconds: float, concurrency: int) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(f"{HOST}:{port}") as channel:  # the server is up
        await asyncio.wait_for(channel.channel_ready(), 60)
    return {
        "ext_proc_mesh_transport": await ext_proc(port, server, seconds, concurrency, None),
        "ext_proc_grpcio_server": await ext_proc(port, server, seconds, concurrency, ADS),
        **await checks(port, seconds, concurrency),
    }


async def in_process(tmp: Path, seconds: float) -> dict[str, int]:
    """The decision alone: bytes in, bytes out, through the same objects the server uses; its rate,
    and the loop thread's CPU time per decision (p50, p99, max: its own tail, without waits)."""
    from envoy.service.ext_proc.v3 import external_processor_pb2 as pb

    from gateway.loading import load_gateway_config
    from gateway.mesh.ext_proc import BodyModes, _Stream, serialized
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
        costs: list[float] = []
        began = time.perf_counter()
        stop = began + seconds
        while time.perf_counter() < stop:
            for message in raw[:100]:
                # This thread's CPU time: what a decision costs whatever else shares the core.
                cpu = time.thread_time()
                stream = _Stream(runtime, BodyModes(), 1 << 20, frozenset())
                answer = await stream.answer(pb.ProcessingRequest.FromString(message))
                serialized(answer)
                stream.end(200, "")
                costs.append(time.thread_time() - cpu)
            done += 100
            await asyncio.sleep(0)  # the recorder's task writes its batches, as in the server
        rate = done / (time.perf_counter() - began)
        costs.sort()
        return {
            "decisions_per_s": round(rate),
            "cpu_us_p50": round(costs[len(costs) // 2] * 1e6),
            "cpu_us_p99": round(costs[int(len(costs) * 0.99)] * 1e6),
            "cpu_us_max": round(costs[-1] * 1e6),
        }
    finally:
        await gateway.shutdown(drain_timeout=1.0)


# The floor under the paced run's latency: a server that only echoes, pinned and paced the same way.
# What it measures is the machine (scheduling, other jobs on the server's core), not turnout.
ECHO_SERVER = """
import asyncio, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
    def data_received(self, data):
        self.transport.write(data)
async def serve():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()
asyncio.run(serve())
"""


class _EchoClient(asyncio.Protocol):
    """Sends its clock's reading; each echo's age is one latency."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self._buffer = b""

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        buffer = self._buffer + data
        whole = len(buffer) - len(buffer) % 8
        self.latencies.extend(now - sent for (sent,) in struct.iter_unpack("d", buffer[:whole]))
        self._buffer = buffer[whole:]


async def echo_paced(port: int, seconds: float) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    for _ in range(500):  # the echo process starts in well under the 5 s this allows
        try:
            transport, client = await loop.create_connection(_EchoClient, HOST, port)
            break
        except OSError:
            await asyncio.sleep(0.01)
    else:
        raise RuntimeError("the echo server did not start")
    total = int(seconds * PACED_RATE)
    began = time.perf_counter()
    for sent in range(total):  # the same pacing as _grpc_load.paced
        await asyncio.sleep(max(0.0, began + sent / PACED_RATE - time.perf_counter()))
        transport.write(struct.pack("d", time.perf_counter()))
    await asyncio.sleep(0.1)
    transport.close()
    ordered = sorted(client.latencies)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "p99_ms": round(ordered[int(len(ordered) * 0.99)] * 1000, 2),
        "answered": len(ordered),
    }


def echo_floor(server_cpu: set[int], seconds: float) -> dict[str, float]:
    port = free_port()
    echo = subprocess.Popen(
        [sys.executable, "-c", ECHO_SERVER, str(port)], preexec_fn=lambda: os.sched_setaffinity(0, server_cpu)
    )
    try:
        return asyncio.run(echo_paced(port, seconds))
    finally:
        echo.terminate()
        echo.wait(10)


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
            results = asyncio.run(
                over_the_wire(document["mesh"]["port"], server.pid, args.seconds, args.concurrency)
            )
        finally:
            server.terminate()
            server.wait(10)
        results["echo_floor_at_1000_per_s"] = echo_floor(server_cpu, args.seconds)
        results["in_process"] = asyncio.run(in_process(tmp, args.seconds))
    results["placement"] = (
        f"server on CPU {cpus[0]}, load generator on CPU {','.join(map(str, cpus[1:]))}"
        if len(cpus) > 1
        else f"server and load generator share CPU {cpus[0]}"
    )
    results["load_average_1min"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for key, value in results.items():
            print(f"{key}: {json.dumps(value) if isinstance(value, dict) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
