"""Finding broken endpoints: active health checks, and outlier detection on live traffic."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, model_validator

from gateway.config.models.located import errors_at
from gateway.config.models.types import Integer, Number, PositiveDuration, UrlPath
from gateway.core.config_types import StrictModel

StatusCode = Annotated[int, Field(ge=100, le=599)]


class HealthCheckConfig(StrictModel):
    """Active checks: GET `path` on every endpoint every `interval` (or, `type: grpc`, the gRPC
    health service's Check)."""

    type: Literal["http", "grpc"] = Field(
        default="http",
        description="http: GET `path`; grpc: grpc.health.v1.Health/Check, healthy when SERVING (at an "
        "endpoint's grpc_port where it names one).",
    )
    service: str = Field(
        default="", description="type grpc: the service asked about; empty asks about the server."
    )
    path: UrlPath = Field(
        default="/v2/health/ready",
        description="Path to GET; the default is the Open Inference Protocol readiness endpoint.",
    )
    interval: PositiveDuration = Field(default=2.0, description="Time between checks of one endpoint.")
    jitter: Number = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Random spread added to each interval, as a fraction of it, so checks of many "
        "endpoints do not arrive in bursts.",
    )
    timeout: PositiveDuration = Field(default=1.0, description="Time allowed for one check.")
    unhealthy_threshold: Integer = Field(
        default=2, ge=1, description="Consecutive failed checks before an endpoint is taken out."
    )
    healthy_threshold: Integer = Field(
        default=1, ge=1, description="Consecutive passed checks before an endpoint is put back."
    )
    expected_statuses: tuple[StatusCode, ...] = Field(
        default=(200,), min_length=1, description="HTTP statuses that count as healthy."
    )


class OutlierConfig(StrictModel):
    """Passive checks: eject an endpoint whose live requests keep failing, for longer each time."""

    consecutive_failures: Integer = Field(
        default=5,
        ge=0,
        description="Consecutive failures (5xx or connect errors) that eject an endpoint; 0 disables.",
    )
    base_ejection_time: PositiveDuration = Field(
        default=5.0, description="First ejection time; each further ejection lasts this times the count."
    )
    max_ejection_time: PositiveDuration = Field(default=300.0, description="Longest ejection.")
    max_ejection_percent: Number = Field(
        default=50.0,
        ge=0,
        le=100,
        description="Never eject more than this share of a cluster's endpoints, in percent.",
    )

    @model_validator(mode="after")
    def _max_covers_base(self) -> Self:
        if self.max_ejection_time < self.base_ejection_time:
            message = "must be at least base_ejection_time"
            raise errors_at(type(self).__name__, [(("max_ejection_time",), message, self.max_ejection_time)])
        return self
