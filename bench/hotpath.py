"""The Python-side cost of one proxied request, with the sockets taken out.

    python bench/hotpath.py [--requests 5000] [--rounds 30] [--in-flight 32] [--json]

A real turnout gateway (config, runtime, listener, proxy, pools, metrics) is started in this process,
but its client connections and its upstream connection run over fake transports: each round feeds
`--in-flight` keep-alive GET requests to as many client connections, then the upstream's answers to
as many upstream connections, so every request takes the whole data path (parse, route, pick an
endpoint, write the upstream head, parse the answer, relay it, record metrics) without a system
call or a load generator. What is left is CPU spent in our code and the libraries it calls, which is
steady to a tenth of a microsecond: the figure to compare before and after a change to the data
path. The best round of `--rounds` is reported (the others lost time to something else).

It runs twice, each in a child process: with the data path as installed (compiled when it is) and
from source (TURNOUT_PURE_PYTHON=1), and prints both and their ratio. The kernel's share of a real
request (reads, writes, epoll) is in bench/proxy.py's CPU µs/req, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# What wrk sends, and what the benchmark's nginx upstream answers.
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"
ANSWER = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 18:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"
)
# Requests run before measuring: imports, caches and the allocator reach their steady state.
WARMUP_REQUESTS = 2000


class FakeTransport:
    """Accepts writes and flow-control calls; counts the bytes written."""

    def __init__(self) -> None:
        self.written = 0
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, data: Iterable[bytes]) -> None:
        for chunk in data:
            self.written += len(chunk)

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


def _config(listen_port: int, admin_port: int) -> str:
    return f"""listen: {{host: 127.0.0.1, port: {listen_port}}}
admin: {{host: 127.0.0.1, port: {admin_port}}}
access_log: {{enabled: false}}
clusters:
  up: {{endpoints: ["127.0.0.1:9"], balancer: round_robin}}
routes:
  - {{name: all, match: {{prefix: /}}, backend: {{cluster: up}}}}
"""


async def _measure(requests: int, rounds: int, in_flight: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from _procs import free_port

    from gateway.core.native import data_path_mode
    from gateway.http.listener import HttpConnection
    from gateway.http.upstream import UpstreamConnection
    from gateway.loading import load_gateway_config
    from gateway.server import Gateway

    with tempfile.TemporaryDirectory() as scratch:
        config_path = Path(scratch) / "hotpath.yaml"
        config_path.write_text(_config(free_port(), free_port()))
        gateway = Gateway(load_gateway_config(config_path))
        await gateway.start()
    try:
        assert gateway.listener is not None
        clients = []
        for _ in range(in_flight):
            client = HttpConnection(gateway.listener)
            transport = FakeTransport()
            client.connection_made(transport)  # type: ignore[arg-type]
            clients.append((client, transport))
        cluster = gateway.runtime.clusters["up"]
        pool = cluster.pool_for(cluster.endpoints.eligible[0])
        upstreams = []
        for _ in range(in_flight):
            # A connection the pool believes it opened: idle, keep-alive, ready for a request.
            upstream = UpstreamConnection(pool)
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

        for _ in range(WARMUP_REQUESTS // in_flight + 1):
            one_round()
        answered = sum(transport.written for _, transport in clients)
        if answered == 0 or len(pool._idle) != in_flight:
            raise RuntimeError("requests did not complete through the fake transports")
        per_round = max(1, requests // in_flight)
        best = float("inf")
        for _ in range(rounds):
            began = time.process_time()
            for _ in range(per_round):
                one_round()
            best = min(best, (time.process_time() - began) / (per_round * in_flight))
        return {"data_path": data_path_mode(), "us_per_request": round(best * 1e6, 3)}
    finally:
        await gateway.shutdown(0.1)


def _child(args: argparse.Namespace) -> int:
    import uvloop

    result = uvloop.run(_measure(args.requests, args.rounds, args.in_flight))
    print(json.dumps(result))
    return 0


def _run_child(args: argparse.Namespace, pure_python: bool) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "TURNOUT_PURE_PYTHON"}
    if pure_python:
        env["TURNOUT_PURE_PYTHON"] = "1"
    argv = [
        sys.executable,
        __file__,
        "--child",
        f"--requests={args.requests}",
        f"--rounds={args.rounds}",
        f"--in-flight={args.in_flight}",
    ]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"hotpath child failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="requests per round (5000)")
    parser.add_argument("--rounds", type=int, default=30, help="rounds; the best is kept (30)")
    parser.add_argument("--in-flight", type=int, default=32, help="requests in flight at once (32)")
    parser.add_argument("--json", action="store_true", help="last line: one JSON object")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child(args)
    installed = _run_child(args, pure_python=False)
    source = _run_child(args, pure_python=True)
    ratio = installed["us_per_request"] / source["us_per_request"]
    report = {
        "requests_per_round": args.requests,
        "rounds": args.rounds,
        "in_flight": args.in_flight,
        "installed": installed,
        "source": source,
        "installed_over_source": round(ratio, 4),
    }
    print(f"Python-side CPU per proxied request, sockets taken out ({args.in_flight} in flight, best of")
    print(f"{args.rounds} rounds of {args.requests}):")
    print(f"  as installed ({installed['data_path']}): {installed['us_per_request']:.2f} µs")
    print(f"  from source (pure Python):  {source['us_per_request']:.2f} µs")
    print(f"  installed / source: {ratio:.2f}x")
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
