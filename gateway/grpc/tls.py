"""The gRPC port's TLS from the same `listen.tls` section as the HTTP port: the same certificate
and key, ALPN `h2` (grpcio offers it), and client certificates verified against `client_ca` when
the section requires them; their subjects become `ctx.tls_subject`, as on the HTTP port.

The files were already checked when the config loaded (`gateway/tls.py` builds the HTTP port's
context from them first), so reading them here fails only when they changed since.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc

from gateway.config import TlsConfig


def server_credentials(tls: TlsConfig, base_dir: Path) -> grpc.ServerCredentials:
    key = (base_dir / tls.key).read_bytes()
    chain = (base_dir / tls.cert).read_bytes()
    # grpcio either requires and verifies a client certificate or asks for none: "optional" (asked
    # for, verified when sent) has no grpcio form, so the gRPC port asks for none then.
    if tls.client_cert != "require" or tls.client_ca is None:
        return grpc.ssl_server_credentials([(key, chain)])
    client_ca = (base_dir / tls.client_ca).read_bytes()
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=client_ca, require_client_auth=True)


# Distinct client certificates remembered with their subjects: a fleet's worth, so a call does not
# parse the certificate its connection already showed; beyond it the memory starts again.
MAX_REMEMBERED_CERTIFICATES = 1024


class PeerSubjects:
    """The verified client certificate's subject of a call, in the form the HTTP port gives
    `ctx.tls_subject` ("CN=alice,O=acme", `gateway.http.listener.certificate_subject`), so the same
    `authz` rules hold on both ports."""

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[bytes, str | None] = {}

    def of(self, auth_context: Mapping[str, Sequence[bytes]]) -> str | None:
        pems = auth_context.get("x509_pem_cert")
        if not pems:
            return None
        pem = pems[0]
        known = self._known
        if pem in known:
            return known[pem]
        if len(known) >= MAX_REMEMBERED_CERTIFICATES:
            known.clear()
        subject = known[pem] = _subject(pem)
        return subject


def _subject(pem: bytes) -> str | None:
    from cryptography import x509

    from gateway.http.listener import certificate_subject

    try:
        name = x509.load_pem_x509_certificate(pem).subject
    except ValueError:
        return None
    # The shape of ssl's getpeercert(): RDNs in the certificate's order, OpenSSL's long names.
    subject = tuple(
        tuple((attribute.oid._name, str(attribute.value)) for attribute in rdn) for rdn in name.rdns
    )
    return certificate_subject({"subject": subject})
