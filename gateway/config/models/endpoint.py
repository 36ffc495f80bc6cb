"""One upstream address of a cluster: ``host:port`` text, or a mapping with a weight."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Any, Self

from pydantic import Field, field_validator, model_validator

from gateway.config.models.located import errors_at
from gateway.config.models.types import Integer, normalize_host
from gateway.core.config_types import StrictModel


def split_address(address: str) -> tuple[str, int]:
    """``"10.0.0.1:80"`` -> ("10.0.0.1", 80); ``"[::1]:80"`` -> ("::1", 80); ``"api.local:80"`` too."""
    text = address.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"invalid address {address!r}: write IPv6 addresses as [::1]:9000")
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"invalid address {address!r}: expected host:port, like 127.0.0.1:9000")
        if ":" in host:
            raise ValueError(f"invalid address {address!r}: put IPv6 addresses in brackets, like [::1]:9000")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"invalid address {address!r}: the port must be a number from 1 to 65535")
    return normalize_host(host), int(port_text)


def join_address(host: str, port: int) -> str:
    """The inverse of split_address: IPv6 literals get their brackets back."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def endpoint_from_text(value: Any) -> Any:
    """The short form ``- 127.0.0.1:9101`` means ``- {address: 127.0.0.1:9101}``."""
    return {"address": value} if isinstance(value, str) else value


class EndpointConfig(StrictModel):
    """An upstream address and its share of traffic."""

    address: str = Field(
        description='"host:port"; the host is an IPv4 address, a bracketed IPv6 address ([::1]:80) or a '
        "DNS name, which is re-resolved every dns_refresh."
    )
    weight: Integer = Field(default=1, ge=1, description="Relative share of traffic for weighted balancers.")
    grpc_port: Integer | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="The endpoint's gRPC port on the same host: gRPC calls routed to its cluster and "
        "gRPC health checks go there, HTTP requests to the address, so one cluster serves both. The "
        "host is kept as written: an IP address, or a DNS name whose every resolved address is called "
        "on this port. Leave it out when the endpoint serves gRPC on its address's own port.",
    )

    @field_validator("address")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return join_address(*split_address(value))

    @model_validator(mode="after")
    def _grpc_port_apart(self) -> Self:
        if self.grpc_port is not None and self.grpc_port == self.port:
            message = (
                f"grpc_port {self.grpc_port} is the port of address {self.address}: leave grpc_port out "
                "when the endpoint serves gRPC on its HTTP port"
            )
            raise errors_at(type(self).__name__, [(("grpc_port",), message, self.grpc_port)])
        return self

    @property
    def host(self) -> str:
        """The host without brackets."""
        return split_address(self.address)[0]

    @property
    def port(self) -> int:
        return split_address(self.address)[1]

    @property
    def needs_dns(self) -> bool:
        """True when the host is a name to resolve rather than an IP address."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return True
        return False


def grpc_ports(endpoints: Iterable[EndpointConfig]) -> dict[tuple[str, int], int]:
    """(host, HTTP port) -> gRPC port of the entries that name a `grpc_port` (see
    `routing/grpc_address.py`, where the gRPC address of each endpoint is made of them)."""
    return {(ep.host, ep.port): ep.grpc_port for ep in endpoints if ep.grpc_port is not None}
