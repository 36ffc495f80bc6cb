"""Telling a model that raised from a server that failed, so a client's bad input never counts
against an endpoint.

Model servers answer 5xx when the model raised on the request's input: TorchServe answers 503
(`"type": "InternalServerException"`, `"message": "Prediction failed"`) for any handler exception;
KServe's Python server answers 500 with `{"error": "ValueError : ..."}`. Treated as server failures,
those answers are retried (the model runs twice on the same bad input, and fails twice) and counted
by outlier detection (a dozen bad inputs eject a healthy replica). Envoy separates the two with
`retriable_status_codes` and outlier detection's `consecutive_gateway_failure`; here the answer's
body decides: a status in `statuses` whose body holds one of `markers` is a model error. It is
relayed to the client as the server gave it, never retried, and the endpoint is credited with an
answer rather than charged with a failure.

Only answers whose length is known and at most `max_body` bytes are held back to be read; a longer
or chunked 5xx is a server failure as before (error bodies are small; a large one is not a model's
error message).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

# TorchServe's handler exception; KServe's "<ExceptionType> : <message>" error field.
DEFAULT_MARKERS: Final = ("InternalServerException", "Prediction failed", "Error : ", "Exception : ")
# The statuses model servers use for a model's exception: KServe and MLServer 500, TorchServe 503.
DEFAULT_STATUSES: Final = (500, 503)
# Error bodies are a line or two; 64 KiB holds any of them and bounds what one answer may hold back.
DEFAULT_MAX_BODY: Final = 64 * 1024


class ModelErrorPolicy:
    """Which 5xx answers of a cluster are a model's error rather than a server's failure."""

    __slots__ = ("_markers", "_statuses", "max_body")

    def __init__(
        self,
        statuses: Iterable[int] = DEFAULT_STATUSES,
        markers: Iterable[str] = DEFAULT_MARKERS,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        self._statuses = frozenset(statuses)
        self._markers = tuple(marker.encode() for marker in markers)
        if not self._markers:
            raise ValueError("a model error policy needs at least one body marker")
        self.max_body = max_body

    def may_be_model_error(self, status: int, content_length: int | None) -> bool:
        """Whether an answer with this head is worth holding back until its body says."""
        return status in self._statuses and content_length is not None and content_length <= self.max_body

    def is_model_error(self, status: int, body: bytes) -> bool:
        """Whether a complete answer is a model's error (the request's fault, not the endpoint's)."""
        if status not in self._statuses or len(body) > self.max_body:
            return False
        return any(marker in body for marker in self._markers)
