"""The `tracing:` section: OpenTelemetry spans exported over OTLP/HTTP (docs/observability.md)."""

from __future__ import annotations

import importlib.util
from typing import Self

from pydantic import Field, model_validator

from gateway.config.models.located import errors_at
from gateway.core.config_types import StrictModel


class TracingConfig(StrictModel):
    """OpenTelemetry traces: a span per request with children for the filter phases, the batching
    queue wait, each upstream attempt and the experiment assignment. Off by default."""

    enabled: bool = Field(
        default=False,
        description="Record and export traces (needs the tracing extra: pip install 'turnout[tracing]').",
    )
    sampling_ratio: float = Field(
        default=0.1,
        ge=0,
        le=1,
        description="Share of new traces recorded; a client's traceparent decides for its own trace "
        "(parent-based). Requests not recorded still pass the trace context upstream.",
    )
    endpoint: str = Field(
        default="http://127.0.0.1:4318/v1/traces",
        min_length=1,
        description="The collector's OTLP/HTTP traces URL (protobuf).",
    )
    service_name: str = Field(
        default="turnout", min_length=1, description="The service.name resource attribute."
    )

    @model_validator(mode="after")
    def _sdk_installed(self) -> Self:
        if self.enabled and not _installed("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.http"):
            message = "tracing needs the OpenTelemetry SDK: pip install 'turnout[tracing]'"
            raise errors_at(type(self).__name__, [(("enabled",), message, self.enabled)])
        if self.enabled and not _protos_current():
            message = (
                "the OpenTelemetry protos are an older copy than the exporter needs (xds-protos, of "
                "the mesh extra, ships one that can overwrite them): "
                "pip install --force-reinstall --no-deps opentelemetry-proto"
            )
            raise errors_at(type(self).__name__, [(("enabled",), message, self.enabled)])
        return self


def _protos_current() -> bool:
    """Whether opentelemetry-proto's own messages are installed, not the older copy xds-protos
    carries for Envoy's protos (the same files: whichever package was installed last wins)."""
    from opentelemetry.proto.common.v1 import common_pb2

    return hasattr(common_pb2, "InstrumentationScope")


def _installed(*modules: str) -> bool:
    """Whether every module can be imported (looked up without importing it)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in modules)
    except ModuleNotFoundError:  # a parent package is missing
        return False
