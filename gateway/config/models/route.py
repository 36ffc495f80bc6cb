"""A route: which requests (match), how to alter them, and which cluster serves them."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from gateway.config.models.filters import FILTER_ENTRY_SCHEMA, FilterSpec, filter_from_yaml
from gateway.config.models.located import errors_at
from gateway.config.models.match import MatchConfig
from gateway.config.models.resilience import RetryConfig
from gateway.config.models.types import HeaderName, HeaderValue, Name, PositiveDuration, UrlPath
from gateway.core.config_types import StrictModel


class RewriteConfig(StrictModel):
    """Changes to the request before it is forwarded: its path, or the model an OpenAI body names."""

    prefix: UrlPath | None = Field(
        default=None, description="Replaces the part of the path matched by match.prefix."
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        description="On an OpenAI route matching match.model: the model name sent upstream in the "
        "body's 'model' (so match.model is an alias the clients use).",
    )

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.prefix is None and self.model is None:
            raise ValueError("give prefix, model or both")
        return self


class HeaderEdits(StrictModel):
    """Headers to set and remove."""

    add: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict, description="Headers to set, replacing any of the same name."
    )
    remove: tuple[HeaderName, ...] = Field(default=(), description="Header names to remove.")


class BackendConfig(StrictModel):
    """Where a route's requests go: one of a cluster, an experiment, or the feedback endpoint."""

    cluster: str | None = Field(default=None, description="Name of a cluster defined under clusters.")
    experiment: str | None = Field(
        default=None, description="Name of an experiment defined under experiments: it picks the cluster."
    )
    feedback: bool = Field(
        default=False,
        description="Answer here: experiment feedback (POST {request_id|unit_id, metric, value}).",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in ("cluster", "experiment") if getattr(self, k) is not None]
        if self.feedback:
            given.append("feedback")
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            raise ValueError(f"give exactly one of cluster, experiment or feedback{found}")
        return self


def _route_name_is_optional(schema: dict[str, Any]) -> None:
    """In the file a route's name may be left out (it defaults to route-<index>); in the model it is
    always filled in, so the JSON Schema for authors must not list it as required."""
    required = schema.get("required")
    if isinstance(required, list) and "name" in required:
        required.remove("name")


class RouteConfig(StrictModel):
    """Requests that meet `match` go to `backend`, through the route's filters."""

    model_config = ConfigDict(json_schema_extra=_route_name_is_optional)

    name: Name = Field(
        description="Unique route name, used in metrics and logs; defaults to route-<index> (from 0)."
    )
    match: MatchConfig = Field(default_factory=MatchConfig, description="Which requests this route takes.")
    rewrite: RewriteConfig | None = Field(default=None, description="Path rewrite before forwarding.")
    request_headers: HeaderEdits = Field(
        default_factory=HeaderEdits, description="Edits to the request headers sent upstream."
    )
    response_headers: HeaderEdits = Field(
        default_factory=HeaderEdits, description="Edits to the response headers sent to the client."
    )
    backend: BackendConfig = Field(description="Where the requests go.")
    retry: RetryConfig | None = Field(default=None, description="Overrides the cluster's retry settings.")
    timeout: PositiveDuration | None = Field(
        default=None, description="Overrides the cluster's request timeout."
    )
    filters: tuple[
        Annotated[FilterSpec, BeforeValidator(filter_from_yaml), WithJsonSchema(FILTER_ENTRY_SCHEMA)], ...
    ] = Field(
        default=(),
        description="Filters run in order: a list of {name: options} entries (or bare names, or "
        '{plugin: "pkg.mod:Factory", config: {...}}).',
    )

    @model_validator(mode="after")
    def _rewrite_needs_prefix(self) -> Self:
        if self.rewrite is not None and self.rewrite.prefix is not None and self.match.prefix is None:
            message = "rewrite.prefix replaces match.prefix, but this route's match has no prefix"
            raise errors_at(type(self).__name__, [(("rewrite", "prefix"), message, self.rewrite.prefix)])
        if self.rewrite is not None and self.rewrite.model is not None and self.match.model is None:
            message = "rewrite.model renames the model matched by match.model, but this route has none"
            raise errors_at(type(self).__name__, [(("rewrite", "model"), message, self.rewrite.model)])
        return self
