"""The `mesh:` section: turnout beside Envoy, as its ext_proc, ext_authz, rate-limit and xDS server."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from gateway.config.models.listen import DEFAULT_MAX_BODY_BYTES
from gateway.config.models.types import Host, Integer, Name
from gateway.core.config_types import ByteSize, StrictModel

BodyMode = Literal["none", "buffered", "streamed"]


class MeshConfig(StrictModel):
    """One gRPC port serving Envoy's external processing, external authorization, rate limit service
    and aggregated discovery (xDS), all decided by this config's routes, filters and experiments."""

    host: Host = Field(default="127.0.0.1", description="Address of the gRPC server.")
    port: Integer = Field(default=18000, ge=1, le=65535, description="Port of the gRPC server.")
    request_body: dict[Name, BodyMode] = Field(
        default_factory=dict,
        description="Per route name: how ext_proc asks Envoy for the request body (through a mode "
        "override Envoy must allow). none decides on the headers, without the filters that read the "
        "body; buffered decides on the whole body (Envoy's BUFFERED mode); streamed decides on the "
        "headers and answers the body's chunks one by one (Envoy's STREAMED mode), the filters that "
        "read the body running at its end. Default: buffered for a route whose filters read the body "
        "(validate, cache), none otherwise.",
    )
    response_body: dict[Name, BodyMode] = Field(
        default_factory=dict,
        description="Per route name: how ext_proc asks Envoy for the answer's body (through a mode "
        "override Envoy must allow). none runs the response filters on the answer's head; buffered "
        "holds the head until the whole body and runs them on both, so they may rewrite it (Envoy's "
        "BUFFERED mode); streamed answers the head at once (the experiment's headers, the filters that "
        "do not read bodies) and each chunk as it comes (Envoy's STREAMED mode), the filters that read "
        "the body seeing the whole answer at its end, to store or study it (a cache filling, output "
        "metrics), not to change it. Default: buffered for a route whose response filters or "
        "experiment read the body, none otherwise.",
    )
    delegated_filters: tuple[Name, ...] = Field(
        default=(),
        description="Filter kinds (config keys, like auth_apikey or rate_limit) that Envoy already "
        "asks turnout about through ext_authz and the rate limit service: ext_proc skips them, so a "
        "request is not authenticated or counted twice. Empty: ext_proc runs every request filter.",
    )
    max_body_bytes: ByteSize = Field(
        default=DEFAULT_MAX_BODY_BYTES,
        gt=0,
        description="Largest request body ext_proc gathers; a larger one ends the stream with an error.",
    )
