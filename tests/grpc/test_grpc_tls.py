"""The gRPC port over TLS (ALPN h2) with the listener's certificate, and client certificates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.conftest import gateway_config
from tests.gateway.test_tls import _pki
from tests.grpc.grpc_upstreams import Upstream
from tests.support.processes import free_port


def _credentials(pki: Path, user: str | None) -> grpc.ChannelCredentials:
    ca = (pki / "ca.crt").read_bytes()
    if user is None:
        return grpc.ssl_channel_credentials(root_certificates=ca)
    return grpc.ssl_channel_credentials(
        root_certificates=ca,
        private_key=(pki / f"{user}.key").read_bytes(),
        certificate_chain=(pki / f"{user}.crt").read_bytes(),
    )


@pytest.mark.parametrize("client_cert", ["none", "require"])
async def test_calls_over_tls(make_gateway: Any, tmp_path: Path, client_cert: str) -> None:
    _pki(tmp_path)
    tls = {"cert": str(tmp_path / "server.crt"), "key": str(tmp_path / "server.key")}
    if client_cert != "none":
        tls |= {"client_ca": str(tmp_path / "ca.crt"), "client_cert": client_cert}
    async with Upstream("one") as one:
        config = gateway_config(
            [one.address],
            listen={"grpc_port": free_port(), "tls": tls},
            routes=[
                {
                    "name": "alice-only",
                    "match": {"grpc_method": "Sleep"},
                    "backend": {"cluster": "up"},
                    "filters": [{"authz": {"tls_subjects": ["CN=alice,O=acme"]}}],
                },
                {"name": "echo", "match": {"grpc_service": "test.Echo"}, "backend": {"cluster": "up"}},
            ],
        )
        async with make_gateway(config) as gw:
            assert gw.grpc is not None
            target = f"127.0.0.1:{gw.grpc.port}"
            async with grpc.aio.secure_channel(target, _credentials(tmp_path, "alice")) as channel:
                assert await channel.unary_unary("/test.Echo/Unary")(b"tls") == b"echo:tls"
                if client_cert == "require":  # the certificate's subject is the caller's identity
                    assert await channel.unary_unary("/test.Echo/Sleep")(b"0") == b"slept"
            if client_cert == "require":
                async with grpc.aio.secure_channel(target, _credentials(tmp_path, "mallory")) as channel:
                    with pytest.raises(grpc.aio.AioRpcError) as denied:
                        await channel.unary_unary("/test.Echo/Sleep")(b"0")
                    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
                    assert await channel.unary_unary("/test.Echo/Unary")(b"m") == b"echo:m"
            async with grpc.aio.secure_channel(target, _credentials(tmp_path, None)) as channel:
                unary = channel.unary_unary("/test.Echo/Unary")
                if client_cert == "require":
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await unary(b"tls", timeout=5)
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                else:
                    assert await unary(b"tls") == b"echo:tls"
            # a cleartext client cannot call a TLS port
            async with grpc.aio.insecure_channel(target) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as cleartext:
                    await channel.unary_unary("/test.Echo/Unary")(b"x", timeout=5)
                assert cleartext.value.code() == grpc.StatusCode.UNAVAILABLE
