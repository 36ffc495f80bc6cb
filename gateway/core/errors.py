"""The gateway's error tree.

Every error a caller can see carries its HTTP status and a message meant for that caller. Foreign
exceptions (OSError from a socket, aiohttp's, redis's, grpc's) are translated into this tree once, at
the boundary where they occur, so the data path only ever handles these::

    GatewayError                    status, message, JSON body {"error": ..., "code": ...}
    ├── BadRequest                  400  malformed request (bad JSON, bad tensor shape, ...)
    │   ├── InvalidPath             400  a path that has no normal form (gateway/core/paths.py)
    │   ├── RequestTimeout          408  a request body that stopped arriving
    │   ├── PayloadTooLarge         413
    │   └── HeadersTooLarge         431
    ├── Unauthorized                401  missing or invalid credentials
    ├── Forbidden                   403  valid credentials, not allowed
    ├── NotFound                    404  no route, unknown model
    ├── TooManyRequests             429  rate limited, batch queue full
    └── UpstreamError               5xx  the upstream side failed
        ├── BadGateway              502  connection reset, malformed upstream response
        ├── ServiceUnavailable      503  no healthy endpoint
        │   └── Overloaded          503  circuit breaker open (x-turnout-overloaded: 1)
        └── GatewayTimeout          504  the upstream did not answer in time
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson


class GatewayError(Exception):
    """Base of every error that turns into an HTTP answer."""

    status: int = 500
    code: str = "internal"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: Mapping[str, str] = headers or {}

    def body(self) -> bytes:
        """The JSON body sent to the caller."""
        return orjson.dumps({"error": self.message, "code": self.code})


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"


class InvalidPath(BadRequest):
    code = "invalid_path"


class RequestTimeout(BadRequest):
    status = 408
    code = "request_timeout"


class PayloadTooLarge(BadRequest):
    status = 413
    code = "payload_too_large"


class HeadersTooLarge(BadRequest):
    status = 431
    code = "headers_too_large"


class Unauthorized(GatewayError):
    status = 401
    code = "unauthorized"


class Forbidden(GatewayError):
    status = 403
    code = "forbidden"


class NotFound(GatewayError):
    status = 404
    code = "not_found"


class TooManyRequests(GatewayError):
    status = 429
    code = "too_many_requests"


class UpstreamError(GatewayError):
    status = 502
    code = "upstream_error"


class BadGateway(UpstreamError):
    status = 502
    code = "bad_gateway"


class ServiceUnavailable(UpstreamError):
    status = 503
    code = "unavailable"


class Overloaded(ServiceUnavailable):
    code = "overloaded"

    def __init__(self, message: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, headers={"x-turnout-overloaded": "1", **(headers or {})})


class GatewayTimeout(UpstreamError):
    status = 504
    code = "timeout"


def error_body(status: int, message: str, code: str) -> bytes:
    """A JSON error body for answers that are not raised as exceptions."""
    return orjson.dumps({"error": message, "code": code})
