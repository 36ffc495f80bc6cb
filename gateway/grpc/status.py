"""gRPC status codes <-> the HTTP statuses the rest of the gateway speaks.

The gateway's errors and filters answer with HTTP statuses (`gateway/core/errors.py`); a gRPC client
gets the code it expects for each. In the other direction, an upstream's gRPC code becomes the HTTP
status that metrics, the access log, outlier detection and experiments already understand: an
endpoint is charged (status 500 and above) only for codes that say the server failed.
"""

from __future__ import annotations

import grpc

# After the gRPC project's own table (doc/http-grpc-status-mapping.md), with the gateway's 413 and
# 431 as RESOURCE_EXHAUSTED (a size limit), 404 as UNIMPLEMENTED (no route: an unknown service or
# method), and 408/504 as DEADLINE_EXCEEDED.
_CODE_OF_HTTP: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    408: grpc.StatusCode.DEADLINE_EXCEEDED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    431: grpc.StatusCode.RESOURCE_EXHAUSTED,
    499: grpc.StatusCode.CANCELLED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

# 499 is nginx's "client closed request": the caller cancelled.
_HTTP_OF_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # The upstream has no such method: the caller's mistake, as a missing route is.
    grpc.StatusCode.UNIMPLEMENTED: 404,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.UNAVAILABLE: 503,
}


def code_for_status(status: int) -> grpc.StatusCode:
    """The gRPC code a client gets for the gateway's HTTP status (anything else 4xx/5xx: INTERNAL
    and UNKNOWN as the gRPC table has them)."""
    code = _CODE_OF_HTTP.get(status)
    if code is not None:
        return code
    if status < 300:
        return grpc.StatusCode.OK
    return grpc.StatusCode.UNKNOWN if status < 500 else grpc.StatusCode.INTERNAL


def status_for_code(code: grpc.StatusCode) -> int:
    """The HTTP status recorded for a call that ended with `code` (UNKNOWN, INTERNAL, DATA_LOSS: 500)."""
    return _HTTP_OF_CODE.get(code, 500)
