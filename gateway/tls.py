"""The public listener's TLS context, built from the config's `listen.tls` section.

A file that cannot be read or does not load is a `BuildError` on the field that names it, so the
load-time preflight (which builds this context too) reports it as a located config error and
`turnout run` never gets as far as a listener that cannot start.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from gateway.config import TlsConfig
from gateway.config.errors import BuildError

_SECTION = ("listen", "tls")


def build_tls_context(tls: TlsConfig, base_dir: Path) -> ssl.SSLContext:
    """The listener's TLS settings; files are relative to the config file's directory."""
    cert = _readable(base_dir / tls.cert, "cert")
    key = _readable(base_dir / tls.key, "key")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        # An encrypted key would make OpenSSL prompt on the terminal; a gateway has nobody to answer.
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise BuildError(
            (*_SECTION, "cert"),
            f"{tls.cert} and {tls.key} do not load as a PEM certificate chain and its private key: {exc}",
        ) from None
    if tls.client_cert != "none":
        assert tls.client_ca is not None  # the config model requires it with client certificates
        client_ca = _readable(base_dir / tls.client_ca, "client_ca")
        try:
            context.load_verify_locations(client_ca)
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise BuildError(
                (*_SECTION, "client_ca"), f"{tls.client_ca} does not load as PEM CA certificates: {exc}"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED if tls.client_cert == "require" else ssl.CERT_OPTIONAL
    # HTTP/2 (gRPC) and HTTP/1.1 on the one port. The server's order decides: a client that offers
    # both (curl, browsers) keeps HTTP/1.1, which carries the REST routes; one that offers only h2
    # (gRPC clients) gets it and is handed to the gRPC front door (gateway/grpc/splice.py).
    context.set_alpn_protocols(["http/1.1", "h2"])
    return context


def _readable(path: Path, field: str) -> Path:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise BuildError((*_SECTION, field), f"cannot read {path}: {exc.strerror or exc}") from None
    return path


def _no_passphrase() -> str:
    raise ValueError("the private key is encrypted; give the gateway an unencrypted key file")
