"""What tracing costs one proxied request, with the sockets taken out (bench/hotpath.py's method).

    python bench/tracing_cost.py [--requests 5000] [--rounds 30] [--in-flight 32] [--filter]
                                 [--baseline-tree DIR] [--json]

A gateway runs in a child process with fake client and upstream transports, so every request takes
the whole data path without a system call; the CPU of the process (every thread: the exporter's
too) per request is measured, best of `--rounds`. Children run side by side: tracing off, then
on at each of `--ratios` (10% and 100% unless told). The spans go over OTLP/HTTP to a sink on
loopback (a separate process that answers 200 and decodes nothing), so serialising and posting
them is counted.
`--filter` puts a cors filter on the route (a timed hook: one span per phase when traced).
`--baseline-tree DIR` adds a fourth child, tracing off, running the sources in DIR instead (a copy
of the tree before tracing, say): the cost of tracing being off at all.
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

ROOT = Path(__file__).resolve().parents[1]

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 18:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)
# Requests run before measuring: imports, caches and the allocator reach their steady state.
WARMUP_REQUESTS = 2000
SINK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"


class FakeTransport:
    """Accepts writes and flow-control calls; counts the bytes written."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _config(listen_port: int, admin_port: int, tracing: str, sink_port: int, with_filter: bool) -> str:
    section = ""
    if tracing != "off":
        section = (
            f"tracing: {{enabled: true, sampling_ratio: {tracing}, "
            f"endpoint: 'http://127.0.0.1:{sink_port}/v1/traces'}}\n"
        )
    filters = ", filters: [{cors: {}}]" if with_filter else ""
    return f"""listen: {{host: 127.0.0.1, port: {listen_port}}}
admin: {{host: 127.0.0.1, port: {admin_port}}}
access_log: {{enabled: false}}
{section}clusters:
  up: {{endpoints: ["127.0.0.1:9"], balancer: round_robin}}
routes:
  - {{name: all, match: {{prefix: /}}, backend: {{cluster: up}}{filters}}}
"""


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "bench"))
    from _procs import free_port

    from gateway.core.native import data_path_mode
    from gateway.http.listener import HttpConnection
    from gateway.http.upstream import UpstreamConnection
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    with tempfile.TemporaryDirectory() as scratch:
        config_path = Path(scratch) / "tracing.yaml"
        config_path.write_text(_config(free_port(), free_port(), args.tracing, args.sink, args.filter))
        gateway = Gateway(load_gateway_config(config_path))
        await gateway.start()
    try:
        assert gateway.listener is not None
        clients = []
        for _ in range(args.in_flight):
            client = HttpConnection(gateway.listener)
            transport = FakeTransport()
            client.connection_made(transport)  # type: ignore[arg-type]
            clients.append((client, transport))
        cluster = gateway.runtime.clusters["up"]
        pool = cluster.pool_for(cluster.endpoints.eligible[0])
        upstreams = []
        for _ in range(args.in_flight):
            upstream = UpstreamConnection(pool)  # one the pool believes it opened, idle
            upstream.connection_made(FakeTransport())  # type: ignore[arg-type]
            pool._open += 1
            pool._all.add(upstream)
            pool.put_idle(upstream)
            upstreams.append(upstream)
        feed_clients = [client.data_received for client, _ in clients]
        feed_upstreams = [upstream.data_received for upstream in upstreams]

        def one_round() -> None:
            for feed in feed_clients:
                feed(REQUEST)
            for feed in feed_upstreams:
                feed(ANSWER)

        for _ in range(WARMUP_REQUESTS // args.in_flight + 1):
            one_round()
        if sum(t.written for _, t in clients) == 0 or len(pool._idle) != args.in_flight:
            raise RuntimeError("requests did not complete through the fake transports")
        per_round = max(1, args.requests // args.in_flight)
        best = float("inf")
        for _ in range(args.rounds):
            began = time.process_time()
            for _ in range(per_round):
                one_round()
            # The exporter's thread works between rounds: the loop yields so it is not starved.
            await asyncio.sleep(0)
            best = min(best, (time.process_time() - began) / (per_round * args.in_flight))
        return {"data_path": data_path_mode(), "us_per_request": round(best * 1e6, 3)}
    finally:
        await gateway.shutdown(0.1)


async def _sink(port: int) -> None:
    """Answer every request 200 with an empty body (a collector that keeps nothing)."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                writer.write(SINK_ANSWER)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _run_child(args: argparse.Namespace, tracing: str, tree: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "TURNOUT_PURE_PYTHON"}
    env["PYTHONPATH"] = str(tree)
    if args.pure_python:
        env["TURNOUT_PURE_PYTHON"] = "1"
    argv = [
        sys.executable,
        __file__,
        "--child",
        f"--tracing={tracing}",
        f"--sink={args.sink}",
        f"--requests={args.requests}",
        f"--rounds={args.rounds}",
        f"--in-flight={args.in_flight}",
        *(["--filter"] if args.filter else []),
    ]
    done = subprocess.run(argv, env=env, cwd=tree, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"tracing_cost child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests per round (5000)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds; the best is kept (30)")
    parser.add_argument("--in-flight", type=int, default=32, help="requests in flight at once (32)")
    parser.add_argument("--ratios", default="0.1,1.0", help="sampling ratios to measure (0.1,1.0)")
    parser.add_argument("--filter", action="store_true", help="a cors filter on the route")
    parser.add_argument("--pure-python", action="store_true", help="every child from source")
    parser.add_argument("--baseline-tree", type=Path, help="also measure tracing off in this tree")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--tracing", default="off", help=argparse.SUPPRESS)
    parser.add_argument("--sink", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sink-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink_child:
        asyncio.run(_sink(args.sink))
        return 0
    if args.child:
        import uvloop

        sys.path.insert(0, str(Path.cwd()))
        print(json.dumps(uvloop.run(_measure(args))))
        return 0
    sys.path.insert(0, str(ROOT / "bench"))
    from _procs import free_port

    args.sink = free_port()
    sink = subprocess.Popen([sys.executable, __file__, "--sink-child", f"--sink={args.sink}"])
    try:
        results = {mode: _run_child(args, mode, ROOT) for mode in ("off", *args.ratios.split(","))}
        if args.baseline_tree is not None:
            results["off, baseline tree"] = _run_child(args, "off", args.baseline_tree.resolve())
    finally:
        sink.terminate()
        sink.wait()
    off = results["off"]["us_per_request"]
    print(f"CPU per proxied request, sockets taken out ({args.in_flight} in flight, best of {args.rounds}")
    print(f"rounds of {args.requests}{', cors filter on the route' if args.filter else ''}):")
    for mode, result in results.items():
        label = mode if mode.startswith("off") else f"on, sampling {mode}"
        ratio = result["us_per_request"] / off
        cost = result["us_per_request"]
        print(f"  tracing {label:<24} {cost:8.2f} µs  {ratio:.3f}x  ({result['data_path']})")
    if args.json:
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
