"""Endpoint addresses from config: `host:port` or `[v6]:port`, split into ready IP endpoints and
hostnames that DNS discovery must resolve."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from routing.endpoints import Endpoint


def parse_address(address: str) -> tuple[str, int]:
    """`10.0.0.1:9000` -> ("10.0.0.1", 9000); `[::1]:9000` -> ("::1", 9000); ValueError otherwise."""
    text = address.strip()
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        if not sep:
            raise ValueError(f"invalid address {address!r}: an IPv6 address is written [addr]:port")
        ipaddress.IPv6Address(host)  # raises ValueError for what is not an IPv6 address
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"invalid address {address!r}: use host:port")
        if ":" in host:
            raise ValueError(f"invalid address {address!r}: write an IPv6 address as [addr]:port")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"invalid address {address!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class ParsedAddresses:
    endpoints: tuple[Endpoint, ...]
    """IP addresses, usable at once."""
    hostnames: tuple[tuple[str, int, int], ...]
    """(hostname, port, weight) for names that need DNS discovery."""


def parse_addresses(entries: Iterable[str | tuple[str, int]]) -> ParsedAddresses:
    """Parse `address` or `(address, weight)` entries."""
    endpoints: list[Endpoint] = []
    hostnames: list[tuple[str, int, int]] = []
    for entry in entries:
        address, weight = (entry, 1) if isinstance(entry, str) else entry
        if weight < 1:
            raise ValueError(f"{address}: weight must be at least 1")
        host, port = parse_address(address)
        if is_ip_literal(host):
            endpoints.append(Endpoint(host=host, port=port, weight=weight))
        else:
            hostnames.append((host.lower(), port, weight))
    return ParsedAddresses(tuple(endpoints), tuple(hostnames))
