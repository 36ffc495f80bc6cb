"""The gateway's own sockets and log: the public listener, the admin listener, the access log."""

from __future__ import annotations

from typing import Literal, Self, get_args

from pydantic import Field, model_validator

from gateway.config.models.located import errors_at
from gateway.config.models.types import Host, Integer, PositiveDuration, is_loopback
from gateway.core.config_types import ByteSize, Duration, StrictModel

# Envoy's default limit on a request head is 60 KiB and nginx allows 4 x 8 KiB buffers; 64 KiB fits
# long JWTs and cookies while keeping a slow or hostile client's head small.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
# Envoy's default header count limit; real clients send a few dozen at most.
DEFAULT_MAX_HEADERS = 100
# Big enough for batched tabular or small image tensors as JSON; larger payloads should use the
# binary tensor extension or raise this deliberately.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


class TlsConfig(StrictModel):
    """TLS on the public listener, with optional mutual TLS (client certificates)."""

    cert: str = Field(min_length=1, description="PEM certificate chain of the gateway.")
    key: str = Field(min_length=1, description="PEM private key of the gateway.")
    client_ca: str | None = Field(
        default=None, description="PEM CA bundle that client certificates must chain to (mutual TLS)."
    )
    client_cert: Literal["none", "optional", "require"] = Field(
        default="none",
        description="Ask clients for a certificate: none, optional (verified when sent), or require. "
        "A verified certificate's subject becomes the request's TLS identity (see authz tls_subjects).",
    )

    @model_validator(mode="after")
    def _ca_for_client_certs(self) -> Self:
        if self.client_cert != "none" and not self.client_ca:
            raise errors_at(
                type(self).__name__,
                [(("client_ca",), "client certificates need a client_ca to verify them", self.client_ca)],
            )
        return self


class ListenConfig(StrictModel):
    """The public listener that clients connect to."""

    host: Host = Field(
        default="127.0.0.1",
        description="Address to bind. The default keeps the gateway private; use 0.0.0.0 or :: to serve "
        "other machines.",
    )
    port: Integer = Field(default=8080, ge=1, le=65535, description="TCP port to listen on.")
    max_header_bytes: ByteSize = Field(
        default=DEFAULT_MAX_HEADER_BYTES,
        gt=0,
        description="Largest request head (request line and headers) accepted; larger heads get 431.",
    )
    max_headers: Integer = Field(
        default=DEFAULT_MAX_HEADERS,
        ge=1,
        description="Most request headers accepted; more get 431.",
    )
    max_body_bytes: ByteSize = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        gt=0,
        description="Largest request body accepted; larger bodies get 413.",
    )
    header_timeout: PositiveDuration = Field(
        default=10.0,
        description="Time a client has to send a complete request head, so slow clients (slowloris) "
        "cannot hold connections open.",
    )
    idle_timeout: PositiveDuration = Field(
        default=60.0,
        description="How long an idle keep-alive connection stays open, and how long a request body may "
        "stop arriving before the request is given up (408).",
    )
    drain_timeout: Duration = Field(
        default=30.0,
        description="On SIGTERM, how long to wait for in-flight requests before closing; 0 does not wait.",
    )
    backlog: Integer = Field(
        default=1024,
        ge=1,
        description="Listen backlog: connections the kernel queues before the gateway accepts them.",
    )
    tls: TlsConfig | None = Field(default=None, description="Serve HTTPS (and mutual TLS) when set.")
    escaped_slashes: Literal["reject", "keep"] = Field(
        default="reject",
        description="What to do with an encoded '/' or '\\' (%2F, %5C) in a request path: reject "
        "answers 400; keep forwards it still escaped (as %2F, %5C), for upstreams that read it as part "
        "of a name. Either way routes match the path with the sequence kept escaped, never decoded.",
    )
    grpc_port: Integer | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="TCP port of the gRPC front door (HTTP/2 cleartext, as gRPC clients connect with "
        "prior knowledge) on the same host; absent: no gRPC listener. 0 picks a free port.",
    )

    grpc_transport: Literal["native", "splice"] = Field(
        default="native",
        description="How the main port serves HTTP/2 (gRPC) connections: native serves them on the "
        "gateway's own HTTP/2 transport, inline on the event loop; splice relays their bytes to a "
        "private loopback grpcio server, which costs about twice the CPU per call. Either way every "
        "call goes through the same routes, filters and upstream calls. listen.grpc_port is always "
        "grpcio's.",
    )

    @model_validator(mode="after")
    def _grpc_port_apart(self) -> Self:
        if self.grpc_port is not None and self.grpc_port != 0 and self.grpc_port == self.port:
            message = "the gRPC port must differ from the HTTP port (both listen on the same host)"
            raise errors_at(type(self).__name__, [(("grpc_port",), message, self.grpc_port)])
        return self


class AdminConfig(StrictModel):
    """The admin listener: health, readiness, metrics, and operator actions such as draining."""

    host: Host = Field(
        default="127.0.0.1",
        description="Address to bind. Anything but a loopback address requires a token.",
    )
    port: Integer = Field(default=9901, ge=1, le=65535, description="TCP port of the admin listener.")
    token: str = Field(
        default="",
        description="Bearer token required by the admin API. Required when host is not a loopback "
        "address; keep it out of the file with ${TURNOUT_ADMIN_TOKEN}.",
    )
    allow_link_local_endpoints: bool = Field(
        default=False,
        description="Let the admin API add endpoints in link-local ranges (169.254.0.0/16, fe80::/10) "
        "and at cloud metadata addresses (169.254.169.254, fd00:ec2::254, metadata.google.internal). "
        "Off by default: an endpoint there sends requests, and their answers, to the host's metadata "
        "service. Endpoints in this file are not affected.",
    )

    @model_validator(mode="after")
    def _token_when_exposed(self) -> Self:
        if not self.token and not is_loopback(self.host):
            message = (
                f"required when the admin listener binds {self.host}, which other machines can reach: "
                "set a bearer token, e.g. token: ${TURNOUT_ADMIN_TOKEN}"
            )
            raise errors_at(type(self).__name__, [(("token",), message, self.token)])
        return self


# The fields an access-log line can hold, in the order a line writes them: who, what and how it went
# first, then where it went and how big it was.
AccessLogField = Literal[
    "ts",
    "request_id",
    "method",
    "path",
    "route",
    "cluster",
    "endpoint",
    "status",
    "duration_ms",
    "upstream_ms",
    "bytes_in",
    "bytes_out",
    "retries",
    "client",
    "experiment",
    "arm",
    "error",
]
ACCESS_LOG_FIELDS: tuple[AccessLogField, ...] = get_args(AccessLogField)


class AccessLogConfig(StrictModel):
    """One JSON line per request: method, path, status, latency, route, cluster, endpoint."""

    enabled: bool = Field(default=True, description="Write the access log.")
    path: str = Field(
        default="stdout",
        min_length=1,
        description='Where to write: "stdout", "stderr", or a file path.',
    )
    sample: float = Field(
        default=1.0,
        gt=0,
        le=1,
        description="Share of requests logged (answers of 500 and above are always logged).",
    )
    fields: tuple[AccessLogField, ...] = Field(
        default=ACCESS_LOG_FIELDS, min_length=1, description="The fields of each line, in this order."
    )
