"""Which requests a route takes: path, method, host, headers and inference model."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import BeforeValidator, Field, field_validator, model_validator

from gateway.config.models.located import errors_at
from gateway.config.models.types import HeaderName, Regex, Text, UrlPath, is_dns_name
from gateway.config.paths import Path
from gateway.core.config_types import StrictModel
from gateway.core.errors import InvalidPath
from gateway.core.paths import normalize_path

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]
HTTP_METHODS: frozenset[str] = frozenset(get_args(HttpMethod))


def upper_case(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def header_match_from_text(value: Any) -> Any:
    """``x-tenant: acme`` is short for ``x-tenant: {exact: acme}``."""
    if isinstance(value, str | int) and not isinstance(value, bool):
        return {"exact": value}
    return value


class HeaderMatch(StrictModel):
    """A condition on one request header: exactly one of exact, regex or present."""

    exact: Text | None = Field(default=None, description="The header's whole value equals this.")
    regex: Regex | None = Field(default=None, description="The header's value matches this (re.search).")
    present: bool | None = Field(
        default=None, description="true: the header is present; false: it is absent."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [name for name in ("exact", "regex", "present") if getattr(self, name) is not None]
        if len(given) != 1:
            found = f" (found {', '.join(given)})" if given else ""
            raise ValueError(f"give exactly one of exact, regex or present{found}")
        return self


def match_host(value: str) -> str:
    """An exact host name or a ``*.example.com`` wildcard, lower-cased (host names ignore case)."""
    host = value.strip().lower()
    name = host[2:] if host.startswith("*.") else host
    if not is_dns_name(name):
        raise ValueError(
            f"invalid host {value!r}: use a name like example.com or *.example.com, without a port"
        )
    return host


# A protobuf full name (package.Service) or a method name: dotted identifiers.
GRPC_NAME = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"


def grpc_call_path(data: Any) -> Any:
    """`grpc_service`/`grpc_method` become the path condition they stand for: a gRPC call's path is
    /SERVICE/METHOD, so the router needs nothing new to match them. Kept alongside, for the docs and
    `turnout config explain`; combining them with path, prefix or regex is refused."""
    if not isinstance(data, dict):
        return data
    service, method = data.get("grpc_service"), data.get("grpc_method")
    if not isinstance(service, str | None) or not isinstance(method, str | None):
        return data
    given = any(data.get(key) is not None for key in ("path", "prefix", "regex"))
    if (service is None and method is None) or given:
        return data
    if service is not None and method is not None:
        return {**data, "path": f"/{service}/{method}"}
    if service is not None:
        return {**data, "prefix": f"/{service}/"}
    return {**data, "regex": f"^/[^/]+/{re.escape(str(method))}$"}


class MatchConfig(StrictModel):
    """Conditions a request must meet, all of them; an empty match takes every request."""

    @model_validator(mode="before")
    @classmethod
    def _grpc_names(cls, data: Any) -> Any:
        return grpc_call_path(data)

    path: UrlPath | None = Field(default=None, description="The request path equals this.")
    prefix: UrlPath | None = Field(default=None, description="The request path starts with this.")
    regex: Regex | None = Field(default=None, description="The request path matches this (re.search).")
    methods: tuple[Annotated[HttpMethod, BeforeValidator(upper_case)], ...] | None = Field(
        default=None, min_length=1, description="Request methods taken (any case); absent means all."
    )
    host: str | None = Field(
        default=None, description='The Host header, without port: "example.com" or "*.example.com".'
    )
    headers: dict[
        HeaderName,
        Annotated[
            HeaderMatch, BeforeValidator(header_match_from_text, json_schema_input_type=str | HeaderMatch)
        ],
    ] = Field(
        default_factory=dict,
        description="Header conditions by name: a value to equal, or {exact: ...}, {regex: ...}, "
        "{present: true|false}.",
    )
    model: str | None = Field(
        default=None,
        min_length=1,
        description="Inference model name, read from an Open Inference Protocol v2 or KServe v1 path, "
        "or from the request message of an OIP v2 gRPC call.",
    )
    version: Text | None = Field(
        default=None,
        min_length=1,
        description="Model version, read from the path along with model (from the request message "
        "for gRPC calls).",
    )
    grpc_service: str | None = Field(
        default=None,
        pattern=GRPC_NAME,
        description="gRPC calls to this service (full name, e.g. inference.GRPCInferenceService); "
        "short for the path /SERVICE/ (or /SERVICE/METHOD with grpc_method).",
    )
    grpc_method: str | None = Field(
        default=None,
        pattern=GRPC_NAME,
        description="gRPC calls of this method (e.g. ModelInfer), of any service unless grpc_service "
        "names one.",
    )

    @field_validator("host")
    @classmethod
    def _host(cls, value: str | None) -> str | None:
        return None if value is None else match_host(value)

    @field_validator("path", "prefix")
    @classmethod
    def _normalised(cls, value: str | None) -> str | None:
        # Requests are matched on their normalised path (gateway/core/paths.py): a path or prefix
        # in another form (`//`, `/./`, `%7E`) would never match anything.
        if value is None:
            return None
        try:
            normal = normalize_path(value, keep_escaped_slashes=True)
        except InvalidPath as exc:
            raise ValueError(exc.message) from None
        if normal != value:
            raise ValueError(f"request paths are matched normalised, so write {normal!r}")
        return value

    @model_validator(mode="after")
    def _one_path_condition(self) -> Self:
        given = [name for name in ("path", "prefix", "regex") if getattr(self, name) is not None]
        if self.grpc_service is not None or self.grpc_method is not None:
            derived = grpc_call_path({"grpc_service": self.grpc_service, "grpc_method": self.grpc_method})
            regex = self.regex.pattern if self.regex is not None else None
            if (self.path, self.prefix, regex) != tuple(derived.get(k) for k in ("path", "prefix", "regex")):
                message = (
                    "grpc_service and grpc_method stand for the path: give them without path, prefix or regex"
                )
                raise errors_at(type(self).__name__, [((given[0],), message, getattr(self, given[0]))])
        if len(given) > 1:
            message = f"use only one of path, prefix and regex (this match also has {given[0]})"
            problems: list[tuple[Path, str, Any]] = [
                ((name,), message, getattr(self, name)) for name in given[1:]
            ]
            raise errors_at(type(self).__name__, problems)
        return self
