"""Active health checking over gRPC: `grpc.health.v1.Health/Check` on each endpoint.

The same schedule, thresholds and endpoint flips as the HTTP checker (`routing/health/active.py`);
only the check differs. An endpoint is healthy when it answers `SERVING` for the configured service
("" asks about the server as a whole). Any other answer (`NOT_SERVING`, `UNKNOWN`,
`SERVICE_UNKNOWN`), a gRPC error, a refused connection or a timeout is a failure. Each check opens a
fresh channel, so it also proves the endpoint still accepts connections, as the HTTP checker's fresh
connection does.

The messages are two tiny protobufs, written and read here by hand (field 1 of each: the service
name in the request, the status enum in the answer), so no generated health classes are needed:
https://github.com/grpc/grpc/blob/master/doc/health-checking.md
"""

from __future__ import annotations

from typing import Any

import grpc

from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.grpc_address import GrpcAddresses
from routing.health.active import CheckResult, HttpHealthChecker

CHECK_METHOD = "/grpc.health.v1.Health/Check"
# HealthCheckResponse.ServingStatus values (grpc/health/v1/health.proto).
SERVING_STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_SERVING = 1


def check_request(service: str) -> bytes:
    """HealthCheckRequest{service}: field 1, length-delimited (absent when empty, as proto3 writes)."""
    name = service.encode()
    if not name:
        return b""
    return b"\x0a" + _varint(len(name)) + name


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def serving_status(answer: bytes) -> int:
    """The status field (1, a varint) of a HealthCheckResponse; 0 (UNKNOWN) when absent. Raises
    ValueError for bytes that are not such a message."""
    at, status = 0, 0
    while at < len(answer):
        key = answer[at]
        at += 1
        if key == 0x08:  # field 1, varint
            status, shift = 0, 0
            while True:
                if at >= len(answer) or shift > 63:
                    raise ValueError("a truncated varint")
                byte = answer[at]
                at += 1
                status |= (byte & 0x7F) << shift
                shift += 7
                if byte < 0x80:
                    break
        else:  # the message has no other field; anything else is not a health answer
            raise ValueError(f"an unexpected field key {key:#x}")
    return status


class GrpcHealthChecker(HttpHealthChecker):
    def __init__(
        self,
        endpoint_set: EndpointSet,
        service: str = "",
        addresses: GrpcAddresses | None = None,
        **options: Any,
    ) -> None:
        """`service`: the name asked about ("" for the server); `addresses`: where endpoints whose
        entry names a `grpc_port` serve gRPC (each checked there, a resolved name's addresses
        included); the rest as for `HttpHealthChecker`."""
        super().__init__(endpoint_set, **options)
        self._request = check_request(service)
        self.addresses = addresses if addresses is not None else GrpcAddresses({}, endpoint_set.get)
        """Where each endpoint serves gRPC; endpoints added since the config are set on it
        (`gateway/grpc_ports.py`)."""

    async def check(self, endpoint: Endpoint) -> CheckResult:
        started = self._clock()
        address = self.addresses.of(endpoint)
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                answer = await channel.unary_unary(CHECK_METHOD)(self._request, timeout=self._timeout)
            status = serving_status(answer)
        except grpc.aio.AioRpcError as exc:
            now = self._clock()
            reason = f"{exc.code().name}: {exc.details()}"
            return CheckResult(at=now, healthy=False, status=None, latency_s=now - started, error=reason)
        except ValueError as exc:
            now = self._clock()
            reason = f"not a health answer: {exc}"
            return CheckResult(at=now, healthy=False, status=None, latency_s=now - started, error=reason)
        now = self._clock()
        healthy = status == _SERVING
        error = None if healthy else SERVING_STATUS.get(status, f"status {status}")
        return CheckResult(at=now, healthy=healthy, status=None, latency_s=now - started, error=error)
