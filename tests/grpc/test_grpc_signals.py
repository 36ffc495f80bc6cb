"""A real `turnout run` process under gRPC load: SIGHUP (reload) and SIGTERM (drain) lose no call.

Calls sent after SIGTERM are not part of the promise: the port has said GOAWAY, and grpcio cancels
a call that reaches it while it stops."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import grpc
import yaml

from tests.conftest import gateway_config
from tests.grpc.grpc_upstreams import Upstream
from tests.support.processes import free_port, start_gateway


async def test_sighup_and_sigterm_under_grpc_load_lose_nothing(tmp_path: Path) -> None:
    async with Upstream("one") as one:
        grpc_port = free_port()
        config = gateway_config(
            [one.address],
            listen={"grpc_port": grpc_port, "drain_timeout": "10s"},
            routes=[{"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}}],
        )
        path = tmp_path / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        gateway = start_gateway(path, config["listen"]["port"], config["admin"]["port"], tmp_path)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                sleep = channel.unary_unary("/test.Echo/Sleep")
                unary = channel.unary_unary("/test.Echo/Unary")
                assert await unary(b"up") == b"echo:up"

                async def steady(count: int) -> list[bytes]:
                    return [await unary(str(i).encode()) for i in range(count)]

                # a reload in the middle of steady load
                load = asyncio.gather(*(steady(50) for _ in range(4)))
                gateway.proc.send_signal(signal.SIGHUP)
                assert all(len(batch) == 50 for batch in await load)
                # calls in flight when SIGTERM comes finish before the process exits
                slow = asyncio.gather(*(sleep(b"1.0") for _ in range(8)))
                await asyncio.sleep(0.3)
                gateway.proc.send_signal(signal.SIGTERM)
                assert await slow == [b"slept"] * 8
            assert await asyncio.to_thread(gateway.proc.wait, 15) == 0
            assert "config reloaded (SIGHUP)" in gateway.log()
        finally:
            gateway.stop()
