"""`model_errors` on a cluster: which 5xx answers mean the model raised on the request's input."""

from __future__ import annotations

from pydantic import Field, field_validator

from gateway.config.models.types import Integer
from gateway.core.config_types import StrictModel
from routing.resilience.model_errors import DEFAULT_MARKERS, DEFAULT_STATUSES


class ModelErrorsConfig(StrictModel):
    """A 5xx answer whose body says the model raised is the request's failure, not the endpoint's:
    it is relayed as is, never retried, and never counted by outlier detection."""

    statuses: tuple[Integer, ...] = Field(
        default=DEFAULT_STATUSES,
        min_length=1,
        description="Statuses a model server uses for a model's exception (TorchServe 503, KServe 500).",
    )
    markers: tuple[str, ...] = Field(
        default=DEFAULT_MARKERS,
        min_length=1,
        description="Text in the answer's body that says the model raised; any one is enough.",
    )

    @field_validator("statuses")
    @classmethod
    def _server_errors(cls, statuses: tuple[int, ...]) -> tuple[int, ...]:
        wrong = [status for status in statuses if not 500 <= status <= 599]
        if wrong:
            raise ValueError(f"only 5xx statuses can be model errors, not {wrong}")
        return statuses
