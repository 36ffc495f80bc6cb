"""The gRPC port's TLS from the same `listen.tls` section as the HTTP port: the same certificate
and key, ALPN `h2` (grpcio offers it), and client certificates verified against `client_ca` when
the section asks for them.

The files were already checked when the config loaded (`gateway/tls.py` builds the HTTP port's
context from them first), so reading them here fails only when they changed since.
"""

from __future__ import annotations

from pathlib import Path

import grpc

from gateway.config import TlsConfig


def server_credentials(tls: TlsConfig, base_dir: Path) -> grpc.ServerCredentials:
    key = (base_dir / tls.key).read_bytes()
    chain = (base_dir / tls.cert).read_bytes()
    if tls.client_cert == "none" or tls.client_ca is None:
        return grpc.ssl_server_credentials([(key, chain)])
    client_ca = (base_dir / tls.client_ca).read_bytes()
    # "optional": a certificate is asked for and verified when sent; "require": no certificate, no call.
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=tls.client_cert == "require"
    )
