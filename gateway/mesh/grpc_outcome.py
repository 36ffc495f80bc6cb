"""A gRPC answer's outcome as Envoy relays it to ext_proc: the `grpc-status` of its trailers (or of
its head, for a trailers-only answer), not the HTTP 200 every gRPC answer carries.

The code becomes the HTTP status the rest of the gateway counts with, by the gRPC front door's table
(`gateway/grpc/status.py`): route metrics, the endpoint's outcome and the experiment's outcome then
see a gRPC failure as the proxy sees an HTTP one.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote

import grpc

from gateway.grpc.status import status_for_code

_CODES = {code.value[0]: code for code in grpc.StatusCode}
GRPC_CONTENT_TYPE = "application/grpc"  # also application/grpc+proto and the like
GRPC_STATUS = "grpc-status"
GRPC_MESSAGE = "grpc-message"
# A gRPC answer that ends without grpc-status broke the protocol: gRPC clients see it as UNKNOWN
# (or INTERNAL), a failure of the server.
_MISSING = status_for_code(grpc.StatusCode.UNKNOWN)


def is_grpc(headers: Iterable[tuple[str, str]]) -> bool:
    """An answer (or request) head with a gRPC content type (`application/grpc`, `+proto`, ...)."""
    for name, value in headers:
        if name == "content-type":
            return value.startswith(GRPC_CONTENT_TYPE)
    return False


def header(headers: Iterable[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in headers if key == name), None)


def grpc_outcome(headers: Iterable[tuple[str, str]]) -> tuple[int, str | None]:
    """(HTTP status, error) for the `grpc-status` and `grpc-message` in `headers` (trailers, or a
    trailers-only head): 200 and None for OK; the error is the message the server sent, if any."""
    pairs = list(headers)
    value = header(pairs, GRPC_STATUS)
    if value is None or not value.isdigit():
        return _MISSING, f"a gRPC answer without a valid {GRPC_STATUS}"
    number = int(value)
    if number == 0:
        return 200, None
    status = status_for_code(_CODES.get(number, grpc.StatusCode.UNKNOWN))
    message = header(pairs, GRPC_MESSAGE)  # percent-encoded, as gRPC's spec has it
    return status, unquote(message) if message else f"{GRPC_STATUS} {number}"
