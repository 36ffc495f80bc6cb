"""gRPC unary ModelInfer, direct to an upstream and through turnout's gRPC front door, side by side.

    python bench/grpc_calls.py [--seconds 5] [--concurrency 1 32] [--gateway-cpu 0] [--h2-cost]
                               [--floor] [--native] [--compare TREE [--rounds 3]]

An upstream process serves `inference.GRPCInferenceService/ModelInfer` with a fixed answer (a small
FP32 tensor: 1 x 30 in, 1 x 2 out, as raw contents), so the figures are the transport's and the
gateway's, not a model's. A turnout process (pinned to one core with --gateway-cpu) routes the calls
to it by model name. Closed-loop clients (each sends its next call when the last one is answered,
as ghz does) run in this process on one channel; each run prints calls/s, p50 and p99, direct,
through turnout's gRPC port (`listen.grpc_port`) and through its main port (HTTP/2 told apart from
HTTP/1.1 by its preface and spliced to the front door), and the ratios the issue's targets are stated
in.

--native adds a second turnout process whose main port serves HTTP/2 on the gateway's own transport
(`listen.grpc_transport: native`, gateway/grpc/h2_front.py) instead of splicing it to grpcio: the
"native" row, with its CPU per call beside the gRPC port's.

--floor adds a bare grpcio relay (a generic handler forwarding the bytes on one upstream channel, on
uvloop like the gateway, no routing or filters): what grpcio's server and client stacks alone add
per call, the part of turnout's added latency that no change to the relay's own code can remove.

--compare TREE runs only the `native` row, in rounds (--rounds), against a second gateway started
from TREE's sources (a checkout of another commit): direct, this tree, TREE, interleaved each round,
then the medians of p50 added and CPU per call. Set TURNOUT_PURE_PYTHON=1 to compare sources alone.

--h2-cost also measures what the alternative design would spend: the CPU time of one unary gRPC
call through the pure-Python `h2` state machine (client and server side of one connection, no
sockets), which a gateway built on it would pay twice per call (client side and upstream side).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this file's folder comes first on the path, and this file would shadow grpcio.
sys.path[0] = str(ROOT)

import grpc  # noqa: E402

from inference_workers.grpc_codec import pb  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"
# Calls before measuring: channels connect and the interpreter's caches fill.
WARMUP_CALLS = 300


def _request() -> bytes:
    request = pb.ModelInferRequest(model_name="risk", model_version="1", id="bench")
    request.inputs.add(name="features", datatype="FP32", shape=[1, 30])
    request.raw_input_contents.append(b"\x00\x00\x80\x3f" * 30)
    return bytes(request.SerializeToString())


def _answer() -> bytes:
    answer = pb.ModelInferResponse(model_name="risk", model_version="1", id="bench")
    answer.outputs.add(name="probabilities", datatype="FP32", shape=[1, 2])
    answer.raw_output_contents.append(b"\x00\x00\x00\x3f" * 2)
    return bytes(answer.SerializeToString())


# ----- the upstream (this file run with --serve-upstream PORT) -----


async def _serve_upstream(port: int) -> None:
    answer = _answer()

    async def infer(request: bytes, context: Any) -> bytes:
        return answer

    class Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(infer) if details.method == METHOD else None

    server = grpc.aio.server(handlers=[Handler()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


async def _serve_bare_relay(port: int, upstream_port: int) -> None:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{upstream_port}")
    upstream = channel.unary_unary(METHOD)

    async def relay(request: bytes, context: Any) -> bytes:
        reply: bytes = await upstream(request)
        return reply

    class Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(relay) if details.method == METHOD else None

    server = grpc.aio.server(handlers=[Handler()])
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


# ----- the load -----


async def _closed_loop(target: str, concurrency: int, seconds: float) -> tuple[float, list[float]]:
    """(calls per second, latencies in seconds) of `concurrency` clients calling back to back."""
    request = _request()
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)
        for _ in range(WARMUP_CALLS // concurrency + 1):
            await asyncio.gather(*(call(request) for _ in range(concurrency)))
        latencies: list[float] = []
        end = time.perf_counter() + seconds

        async def client() -> None:
            while (started := time.perf_counter()) < end:
                await call(request)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(latencies) / (time.perf_counter() - began), latencies


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(target: str, concurrency: int, seconds: float, pid: int) -> tuple[float, list[float], float]:
    """`_closed_loop`, plus the CPU seconds the relaying process `pid` spent per call meanwhile."""
    before = _cpu_seconds(pid)
    rate, latencies = asyncio.run(_closed_loop(target, concurrency, seconds))
    return rate, latencies, (_cpu_seconds(pid) - before) / max(len(latencies), 1)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(target: str, timeout: float = 20.0) -> None:
    channel = grpc.insecure_channel(target)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    finally:
        channel.close()


def _start_gateway(
    upstream_port: int, cpu: int | None, workdir: Path, transport: str = "splice", tree: Path = ROOT
) -> tuple[subprocess.Popen[bytes], int, int]:
    """The gateway process (from `tree`'s sources), its gRPC port and its main port (whose HTTP/2
    connections are served as `transport` says: listen.grpc_transport)."""
    grpc_port, main_port = _free_port(), _free_port()
    config = workdir / f"gateway-{transport}-{tree.name}.yaml"
    config.write_text(
        f"""listen: {{host: 127.0.0.1, port: {main_port}, grpc_port: {grpc_port},
  grpc_transport: {transport}}}
admin: {{host: 127.0.0.1, port: {_free_port()}}}
access_log: {{enabled: false}}
clusters:
  risk: {{endpoints: ["127.0.0.1:{upstream_port}"]}}
routes:
  - {{name: risk, match: {{model: risk}}, backend: {{cluster: risk}}}}
"""
    )
    command = [sys.executable, "-m", "gateway.cli", "run", "--config", str(config)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen(
        command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return process, grpc_port, main_port


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


def _report(name: str, concurrency: int, rate: float, latencies: list[float]) -> tuple[float, float, float]:
    cuts = statistics.quantiles(latencies, n=100)
    p50, p99 = cuts[49], cuts[98]
    print(f"{name:<8} c={concurrency:<3} {rate:>9.0f} calls/s   p50 {_ms(p50)} ms   p99 {_ms(p99)} ms")
    return rate, p50, p99


def _compare(upstream_port: int, args: argparse.Namespace, workdir: Path) -> None:
    """This tree's native main port against `args.compare`'s, interleaved round by round."""
    trees = {"this": ROOT, "compare": Path(args.compare).resolve()}
    gateways = {
        name: _start_gateway(upstream_port, args.gateway_cpu, workdir, "native", tree)
        for name, tree in trees.items()
    }
    try:
        for _, _, port in gateways.values():
            _wait_ready(f"127.0.0.1:{port}")
        for concurrency in args.concurrency:
            added: dict[str, list[float]] = {name: [] for name in trees}
            cpu: dict[str, list[float]] = {name: [] for name in trees}
            for round_ in range(args.rounds):
                target = f"127.0.0.1:{upstream_port}"
                direct = _report(
                    "direct", concurrency, *asyncio.run(_closed_loop(target, concurrency, args.seconds))
                )
                order = list(gateways.items())
                for name, (process, _, port) in (
                    order[round_ % 2 :] + order[: round_ % 2]
                ):  # each first in turn
                    rate, latencies, used = _measured(
                        f"127.0.0.1:{port}", concurrency, args.seconds, process.pid
                    )
                    row = _report(name, concurrency, rate, latencies)
                    added[name].append(row[1] - direct[1])
                    cpu[name].append(used)
                    print(
                        f"         c={concurrency:<3} {name}: calls/s ratio {row[0] / direct[0]:.2f}   "
                        f"p50 added {_ms(row[1] - direct[1])} ms   CPU per call {used * 1e6:.0f} us"
                    )
            for name in trees:
                p50, used = statistics.median(added[name]), statistics.median(cpu[name])
                print(
                    f"median   c={concurrency:<3} {name}: p50 added {_ms(p50)} ms   "
                    f"CPU per call {used * 1e6:.0f} us"
                )
    finally:
        for process, _, _ in gateways.values():
            process.terminate()
            process.wait(10)


# ----- the alternative: h2's state machine, measured without sockets -----


def _h2_call_cost(calls: int) -> float:
    """Seconds of CPU for one unary gRPC call through h2 (client and server side, one connection)."""
    import h2.config
    import h2.connection
    import h2.events

    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    message = b"\x00" + len(_request()).to_bytes(4, "big") + _request()
    reply = b"\x00" + len(_answer()).to_bytes(4, "big") + _answer()
    head = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", METHOD),
        (":authority", "127.0.0.1"),
        ("te", "trailers"),
        ("content-type", "application/grpc"),
    ]
    started = time.process_time()
    for _ in range(calls):
        stream = client.get_next_available_stream_id()
        client.send_headers(stream, head)
        client.send_data(stream, message, end_stream=True)
        for event in server.receive_data(client.data_to_send()):
            if isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.send_headers(stream, [(":status", "200"), ("content-type", "application/grpc")])
        server.send_data(stream, reply)
        server.send_headers(stream, [("grpc-status", "0")], end_stream=True)
        for event in client.receive_data(server.data_to_send()):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.receive_data(client.data_to_send())
    return (time.process_time() - started) / calls


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--gateway-cpu", type=int, default=None, help="pin the gateway to this CPU")
    parser.add_argument("--h2-cost", action="store_true")
    parser.add_argument("--floor", action="store_true", help="add a bare grpcio relay row")
    parser.add_argument(
        "--native",
        action="store_true",
        help="add a row through a second gateway whose main port serves HTTP/2 on its own transport",
    )
    parser.add_argument("--compare", default=None, help="a checkout whose native main port to compare")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of --compare")
    parser.add_argument("--serve-bare-relay", type=int, nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--serve-upstream", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_upstream is not None:
        asyncio.run(_serve_upstream(args.serve_upstream))
        return
    if args.serve_bare_relay is not None:
        import uvloop

        uvloop.install()
        asyncio.run(_serve_bare_relay(*args.serve_bare_relay))
        return
    if args.h2_cost:
        cost = _h2_call_cost(5000)
        print(
            f"h2 state machine: {cost * 1e6:.0f} us CPU per unary call per connection pair "
            f"(a relay pays it twice: {cost * 2e6:.0f} us)"
        )
    upstream_port = _free_port()
    upstream = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", str(upstream_port)], env={**os.environ}, cwd=ROOT
    )
    if args.compare is not None:
        try:
            _wait_ready(f"127.0.0.1:{upstream_port}")
            with tempfile.TemporaryDirectory() as workdir:
                _compare(upstream_port, args, Path(workdir))
        finally:
            upstream.terminate()
            upstream.wait(10)
        return
    with tempfile.TemporaryDirectory() as workdir:
        gateway, grpc_port, main_port = _start_gateway(upstream_port, args.gateway_cpu, Path(workdir))
        native = None
        if args.native:
            native, _, native_port = _start_gateway(upstream_port, args.gateway_cpu, Path(workdir), "native")
        bare = None
        if args.floor:
            bare_port = _free_port()
            command = [sys.executable, __file__, "--serve-bare-relay", str(bare_port), str(upstream_port)]
            if args.gateway_cpu is not None:
                command = ["taskset", "-c", str(args.gateway_cpu), *command]
            bare = subprocess.Popen(command, cwd=ROOT)
        try:
            _wait_ready(f"127.0.0.1:{upstream_port}")
            if bare is not None:
                _wait_ready(f"127.0.0.1:{bare_port}")
            _wait_ready(f"127.0.0.1:{grpc_port}")
            _wait_ready(f"127.0.0.1:{main_port}")
            if native is not None:
                _wait_ready(f"127.0.0.1:{native_port}")
            for concurrency in args.concurrency:
                direct = _report(
                    "direct",
                    concurrency,
                    *asyncio.run(_closed_loop(f"127.0.0.1:{upstream_port}", concurrency, args.seconds)),
                )
                rate, latencies, turnout_cpu = _measured(
                    f"127.0.0.1:{grpc_port}", concurrency, args.seconds, gateway.pid
                )
                turnout = _report("turnout", concurrency, rate, latencies)
                main = _report(
                    "main",
                    concurrency,
                    *asyncio.run(_closed_loop(f"127.0.0.1:{main_port}", concurrency, args.seconds)),
                )
                print(
                    f"         c={concurrency:<3} calls/s ratio {turnout[0] / direct[0]:.2f}   "
                    f"p50 added {_ms(turnout[1] - direct[1])} ms   p99 added {_ms(turnout[2] - direct[2])} ms"
                )
                print(
                    f"         c={concurrency:<3} main port vs gRPC port: calls/s ratio "
                    f"{main[0] / turnout[0]:.2f}   p50 added {_ms(main[1] - turnout[1])} ms"
                )
                if native is not None:
                    rate, latencies, native_cpu = _measured(
                        f"127.0.0.1:{native_port}", concurrency, args.seconds, native.pid
                    )
                    own = _report("native", concurrency, rate, latencies)
                    print(
                        f"         c={concurrency:<3} native main port: "
                        f"calls/s ratio {own[0] / direct[0]:.2f}   "
                        f"p50 added {_ms(own[1] - direct[1])} ms   p99 added {_ms(own[2] - direct[2])} ms   "
                        f"CPU per call {native_cpu * 1e6:.0f} us (gRPC port: {turnout_cpu * 1e6:.0f} us)"
                    )
                if bare is not None:
                    rate, latencies, bare_cpu = _measured(
                        f"127.0.0.1:{bare_port}", concurrency, args.seconds, bare.pid
                    )
                    floor = _report("bare", concurrency, rate, latencies)
                    print(
                        f"         c={concurrency:<3} bare grpcio relay: p50 added "
                        f"{_ms(floor[1] - direct[1])} ms; turnout over it {_ms(turnout[1] - floor[1])} ms"
                    )
                    print(
                        f"         c={concurrency:<3} CPU per call: turnout {turnout_cpu * 1e6:.0f} us, "
                        f"bare grpcio relay {bare_cpu * 1e6:.0f} us"
                    )
        finally:
            if bare is not None:
                bare.terminate()
                bare.wait(10)
            if native is not None:
                native.terminate()
                native.wait(10)
            gateway.terminate()
            upstream.terminate()
            gateway.wait(10)
            upstream.wait(10)


if __name__ == "__main__":
    main()
