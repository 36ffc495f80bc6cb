"""Feedback as a client sends it to `POST /v1/feedback`: checked before anything is recorded.

    {"exposure_id": "...", "metric": "conversion", "value": 1}      joins that one exposure
    {"request_id": "...", ...}                                      the older name of exposure_id
    {"unit_id": "...", ...}                                         joins the unit's latest exposure
    optional "experiment": NAME                                     only that experiment's exposure

An exposure id is made by the gateway for each assigned request and returned in the
`x-turnout-exposure-id` response header. When the client sent no `x-request-id`, the gateway's own
request id is the exposure id, so clients that send back the `x-request-id` they were given keep
working. A request id the client chose is never an exposure id: many clients may choose the same one,
and crediting all their exposures with one value is what exposure ids prevent. Such feedback names
no exposure and is answered 404 (see `gateway.experiments_runtime`).

`parse_feedback` refuses, with a 400 naming the field, anything that is not a well-formed document
with a finite number; `check_bounds` applies the metric's declared bounds once the experiments the
value joins are known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from experiments.config import FEEDBACK_METRIC_PATTERN, FeedbackBounds
from gateway.core.errors import BadRequest

# Ids are as long as the gateway accepts an x-request-id: enough for any UUID or trace id.
MAX_ID_LENGTH = 200
EXAMPLE = '{"exposure_id": "...", "metric": "conversion", "value": 1}'


class OutOfBounds(BadRequest):
    """A finite value outside the bounds its metric declares."""

    code = "out_of_bounds"


@dataclass(frozen=True, slots=True)
class FeedbackDocument:
    metric: str
    value: float
    exposure_id: str | None
    """The exposure named by `exposure_id`, or else by `request_id`."""
    request_id: str | None
    unit_id: str | None
    experiment: str | None


def _id(payload: dict[str, Any], field: str) -> str | None:
    value = payload.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_ID_LENGTH or not value.isprintable():
        raise BadRequest(f"{field}: a printable string of 1 to {MAX_ID_LENGTH} characters is required")
    return value


def parse_feedback(payload: Any) -> FeedbackDocument:
    """The document in `payload` (parsed JSON), or a BadRequest naming the field that is wrong."""
    if not isinstance(payload, dict):
        raise BadRequest(f"body must be a JSON object like {EXAMPLE}")
    metric = payload.get("metric")
    if not isinstance(metric, str) or not FEEDBACK_METRIC_PATTERN.match(metric):
        raise BadRequest("metric: a name of 1 to 100 letters, digits, '_', '.' or '-' is required")
    value = payload.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest("value: a number is required")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise BadRequest("value: must be a finite number")
    exposure_id, request_id, unit_id = (_id(payload, f) for f in ("exposure_id", "request_id", "unit_id"))
    if exposure_id is None and request_id is None and unit_id is None:
        raise BadRequest(
            "exposure_id, request_id or unit_id: one of them is required (exposure_id is the "
            "x-turnout-exposure-id header of the answer that was exposed)"
        )
    experiment = _id(payload, "experiment")
    return FeedbackDocument(metric, number, exposure_id or request_id, request_id, unit_id, experiment)


def check_bounds(document: FeedbackDocument, experiment: str, bounds: FeedbackBounds) -> None:
    """OutOfBounds (a 400) when the value is outside what `experiment` declares for the metric."""
    if not bounds.admits(document.value):
        raise OutOfBounds(
            f"value: {document.value:g} is outside the bounds of metric '{document.metric}' in "
            f"experiment '{experiment}' ([{bounds.min:g}, {bounds.max:g}])"
        )
