"""What the admin API accepts in a body: JSON objects, bounded numbers, endpoint addresses it may reach.

Every refusal is an `InputError` naming the field, answered as JSON 400
`{"error": "...", "field": "weight"}`. Numbers must be JSON numbers (not strings, not booleans),
finite and within the range stated here, so a value such as 1e308 never reaches a balancer or a
split.

An endpoint address is `host:port` with an IP literal or a DNS name. The admin API refuses to send
traffic to link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata services
(169.254.169.254, fd00:ec2::254, metadata.google.internal) unless `admin.allow_link_local_endpoints`
is set: an endpoint there would forward client requests to the host's credentials service and its
answers back to the client. A DNS name is resolved once, when it is added, and refused when any of
its addresses is refused; the check cannot see what the name resolves to later, so names that
others control do not belong here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import re
import socket
from typing import Any, Final

import orjson

from routing.discovery.static import parse_address

# The highest TCP port.
MAX_PORT: Final = 65535
# Endpoint weights through the API: a ring-hash balancer places 160 points per unit of weight, so
# 1000 is 160,000 points for one endpoint, far past any share an operator means and still cheap.
MAX_ENDPOINT_WEIGHT: Final = 1000
# Experiment arm weights are relative (90/10 or 0.9/0.1); a million keeps sums exact in floats.
MAX_ARM_WEIGHT: Final = 1_000_000.0
# How long a DNS name being added may take to resolve: a healthy resolver answers in milliseconds.
RESOLVE_TIMEOUT_S: Final = 2.0
# RFC 3927 and RFC 4291 link-local ranges: cloud metadata services and other host-local services
# live there.
LINK_LOCAL: Final = (ipaddress.ip_network("169.254.0.0/16"), ipaddress.ip_network("fe80::/10"))
# Metadata services outside link-local ranges too: AWS's IPv6 address (a unique-local address).
METADATA_ADDRESSES: Final = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
METADATA_NAMES: Final = frozenset({"metadata.google.internal", "metadata.goog"})
# RFC 6052's well-known NAT64 prefix: an IPv6 address that carries an IPv4 one in its last 32 bits.
NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
# RFC 1123 host names: labels of letters, digits and hyphens, at most 63 characters, 253 in all.
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*\.?")

_ALLOW_HINT: Final = " (admin.allow_link_local_endpoints allows it)"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """A call the admin API answers with `status` and `{"error": message}`.

    Raised rather than answered with aiohttp's HTTP exceptions: their reason goes into the status
    line, where a name taken from the request (a cluster called "a\r") cannot go."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status

    def body(self) -> dict[str, str]:
        return {"error": str(self)}


class InputError(Refused):
    """A body field the admin API refuses; answered with a JSON 400 that names the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(400, message)
        self.field = field

    def body(self) -> dict[str, str]:
        return {"error": str(self), "field": self.field}


def json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object; an empty body is an empty object."""
    if not raw.strip():
        return {}
    try:
        payload = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError("body", f"the body is not JSON: {exc}") from None
    if not isinstance(payload, dict):
        raise InputError("body", "the body must be a JSON object")
    return payload


def required(payload: dict[str, Any], field: str) -> Any:
    if field not in payload:
        raise InputError(field, f"{field} is required")
    return payload[field]


def text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError(field, f"{field} must be a non-empty string")
    return value


def number(value: Any, field: str, low: float, high: float) -> float:
    """A finite JSON number within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(field, f"{field} must be a number from {low:g} to {high:g}")
    as_float = float(value)
    if not math.isfinite(as_float) or not low <= as_float <= high:
        raise InputError(field, f"{field} must be a number from {low:g} to {high:g}")
    return as_float


def endpoint_weight(payload: dict[str, Any]) -> int:
    value = payload.get("weight", 1)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ENDPOINT_WEIGHT:
        raise InputError("weight", f"weight must be a whole number from 1 to {MAX_ENDPOINT_WEIGHT}")
    return value


def endpoint_grpc_port(payload: dict[str, Any], address: str) -> int | None:
    """The endpoint's gRPC port on the same host, where the body names one (as a config entry's
    `grpc_port`: not the address's own port)."""
    value = payload.get("grpc_port")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PORT:
        raise InputError("grpc_port", f"grpc_port must be a whole number from 1 to {MAX_PORT}")
    if value == parse_address(address)[1]:
        raise InputError(
            "grpc_port",
            f"grpc_port {value} is the port of address {address}: leave grpc_port out when the "
            "endpoint serves gRPC on its HTTP port",
        )
    return value


def arm_weights(value: Any) -> dict[str, float]:
    if not isinstance(value, dict) or not value:
        raise InputError("weights", 'weights must be an object like {"control": 90, "treatment": 10}')
    return {arm: number(weight, f"weights.{arm}", 0.0, MAX_ARM_WEIGHT) for arm, weight in value.items()}


def _embedded_ipv4(ip: IpAddress) -> IpAddress:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address reaches; the address itself otherwise."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        if ip in NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip


def refusal(ip: IpAddress, allow_link_local: bool) -> str | None:
    """Why the admin API will not send traffic to `ip`, or None."""
    target = _embedded_ipv4(ip)
    if target.is_unspecified or target.is_multicast:
        return f"{ip} is not an address a request can be sent to"
    if allow_link_local:
        return None
    if target in METADATA_ADDRESSES or ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata service{_ALLOW_HINT}"
    if any(target in network for network in LINK_LOCAL if network.version == target.version):
        return f"{ip} is link-local{_ALLOW_HINT}"
    return None


async def _resolve(host: str) -> list[IpAddress]:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), RESOLVE_TIMEOUT_S
        )
    except (OSError, TimeoutError, UnicodeError):
        return []
    # An IPv6 scope ("fe80::1%eth0") is cut off: the address decides, not the interface.
    return [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]


async def endpoint_address(value: Any, allow_link_local: bool) -> str:
    """The address text, once it parses and every address it reaches may be reached."""
    address = text(value, "address")
    if not address.isascii():
        raise InputError("address", "address must be ASCII host:port, like 127.0.0.1:9000")
    try:
        host, _ = parse_address(address)
    except ValueError as exc:
        raise InputError("address", str(exc)) from None
    try:
        ips = [ipaddress.ip_address(host)]
    except ValueError:
        name = host.lower()
        if not _HOST_NAME.fullmatch(name):
            raise InputError("address", f"{host!r} is neither an IP address nor a DNS name") from None
        if not allow_link_local and name.rstrip(".") in METADATA_NAMES:
            raise InputError("address", f"{host} is a cloud metadata service{_ALLOW_HINT}") from None
        ips = await _resolve(name)
        if not ips:
            raise InputError("address", f"{host} does not resolve") from None
    for ip in ips:
        reason = refusal(ip, allow_link_local)
        if reason is not None:
            raise InputError("address", f"{address}: {reason}")
    return address
