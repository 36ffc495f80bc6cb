"""HTTPS and mutual TLS on the public listener: the client certificate's subject becomes the identity
that `authz` rules can require."""

from __future__ import annotations

import datetime
import json
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.http.listener import certificate_subject
from tests.conftest import gateway_config
from tests.support.processes import Process


def _name(common_name: str, org: str | None = "acme") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if org is not None:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attributes)


def _certificate(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> None:
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )


def _pki(directory: Path) -> None:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("test-ca")
    _write(directory / "ca", _certificate(ca_name, ca_key, ca_name, ca_key, ca=True))
    server_key = ec.generate_private_key(ec.SECP256R1())
    _write(
        directory / "server",
        _certificate(_name("gateway"), server_key, ca_name, ca_key, server=True),
        server_key,
    )
    for user in ("alice", "mallory"):
        key = ec.generate_private_key(ec.SECP256R1())
        _write(directory / user, _certificate(_name(user), key, ca_name, ca_key), key)
    # A common name that, unescaped, would spell alice's whole subject.
    key = ec.generate_private_key(ec.SECP256R1())
    _write(directory / "lookalike", _certificate(_name("alice,O=acme", None), key, ca_name, ca_key), key)


def _client_context(directory: Path, user: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(directory / "ca.crt"))
    if user is not None:
        context.load_cert_chain(directory / f"{user}.crt", directory / f"{user}.key")
    return context


async def test_mutual_tls_subject_is_the_identity(
    make_gateway: Any, upstream_a: Process, tmp_path: Path
) -> None:
    _pki(tmp_path)
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        listen={
            "tls": {
                "cert": str(tmp_path / "server.crt"),
                "key": str(tmp_path / "server.key"),
                "client_ca": str(tmp_path / "ca.crt"),
                "client_cert": "optional",
            }
        },
        routes=[
            {
                "name": "r",
                "match": {"prefix": "/"},
                "backend": {"cluster": "up"},
                "filters": [{"authz": {"tls_subjects": ["CN=alice,O=acme"]}}],
            }
        ],
    )
    async with make_gateway(config) as gw:
        url = f"https://127.0.0.1:{gw.data_port}/echo"
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=_client_context(tmp_path, "alice")) as response:
                assert response.status == 200
                echoed = json.loads(await response.read())
                assert echoed["headers"]["x-forwarded-proto"] == "https"
            async with session.get(url, ssl=_client_context(tmp_path, "mallory")) as response:
                assert response.status in (401, 403)
            async with session.get(url, ssl=_client_context(tmp_path, "lookalike")) as response:
                assert response.status in (401, 403)  # CN=alice\,O=acme is not CN=alice,O=acme
            async with session.get(url, ssl=_client_context(tmp_path, None)) as response:
                assert response.status in (401, 403)  # no certificate, no identity


async def test_required_client_certificate_refuses_the_handshake(
    make_gateway: Any, upstream_a: Process, tmp_path: Path
) -> None:
    _pki(tmp_path)
    config = gateway_config(
        [f"127.0.0.1:{upstream_a.port}"],
        listen={
            "tls": {
                "cert": str(tmp_path / "server.crt"),
                "key": str(tmp_path / "server.key"),
                "client_ca": str(tmp_path / "ca.crt"),
                "client_cert": "require",
            }
        },
    )
    async with make_gateway(config) as gw, aiohttp.ClientSession() as session:
        url = f"https://127.0.0.1:{gw.data_port}/echo"
        async with session.get(url, ssl=_client_context(tmp_path, "alice")) as response:
            assert response.status == 200
        try:
            async with session.get(url, ssl=_client_context(tmp_path, None)) as response:
                await response.read()
                refused = False
        except (aiohttp.ClientError, ssl.SSLError, ConnectionResetError):
            refused = True
        assert refused


def test_subject_values_are_escaped_as_rfc_4514_does() -> None:
    def subject(*rdns: tuple[tuple[str, str], ...]) -> str | None:
        return certificate_subject({"subject": rdns})

    assert subject((("commonName", "alice"),), (("organizationName", "acme"),)) == "CN=alice,O=acme"
    assert subject((("commonName", "alice,O=acme"),)) == "CN=alice\\,O=acme"
    assert subject((("commonName", 'a+b;c<d>e"f\\g'),)) == 'CN=a\\+b\\;c\\<d\\>e\\"f\\\\g'
    assert subject((("commonName", "#lead"),)) == "CN=\\#lead"
    assert subject((("commonName", " padded "),)) == "CN=\\ padded\\ "
    assert subject((("commonName", "mid#dle space"),)) == "CN=mid#dle space"
    # The attributes of one multi-valued RDN are joined by "+", RDNs by ",".
    assert (
        subject((("commonName", "svc"), ("userId", "7")), (("countryName", "FR"),)) == "CN=svc+userId=7,C=FR"
    )
    assert certificate_subject({}) is None and certificate_subject(None) is None
