"""The whole configuration file, and the rules that tie its sections together."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, ValidationInfo, field_validator, model_validator

from experiments.config import ExperimentConfig, RecorderConfig
from gateway.config.models.cluster import ClusterConfig
from gateway.config.models.listen import AccessLogConfig, AdminConfig, ListenConfig
from gateway.config.models.located import errors_at
from gateway.config.models.mesh import MeshConfig
from gateway.config.models.route import RouteConfig
from gateway.config.models.tracing import TracingConfig
from gateway.config.models.types import Integer, Name
from gateway.config.paths import Path
from gateway.config.suggest import closest
from gateway.core.config_types import RedisUrl, StrictModel

# Binding these addresses takes the port on every interface, so they clash with any other host.
_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})


class StateConfig(StrictModel):
    """Where shared state lives: in this process, or in Redis for several gateway replicas."""

    backend: Literal["memory", "redis"] = Field(
        default="memory", description="memory: each gateway keeps its own; redis: replicas share it."
    )
    url: RedisUrl | None = Field(
        default=None, description="The Redis URL (redis://host:port/db) when backend is redis."
    )

    @model_validator(mode="after")
    def _url_for_redis(self) -> Self:
        if self.backend == "redis" and not self.url:
            raise errors_at(type(self).__name__, [(("url",), "backend redis needs a url", self.url)])
        return self

    sqlite_path: str = Field(
        default="var/turnout.db",
        description="The experiment event store when backend is memory (relative to the working "
        "directory): SQLite, written off the request path.",
    )
    recorder: RecorderConfig = Field(
        default_factory=RecorderConfig,
        description="How often experiment events are written: the bound on what a crash can lose.",
    )

    @property
    def redis_url(self) -> str | None:
        return self.url if self.backend == "redis" else None


class GatewayConfig(StrictModel):
    """turnout's configuration: listeners, upstream clusters, and the routes between them."""

    listen: ListenConfig = Field(default_factory=ListenConfig, description="The public listener.")
    admin: AdminConfig = Field(
        default_factory=AdminConfig,
        validate_default=True,  # so the port clash check below also sees the default admin port
        description="The admin listener (health, metrics, operator actions).",
    )
    access_log: AccessLogConfig = Field(default_factory=AccessLogConfig, description="The access log.")
    tracing: TracingConfig = Field(
        default_factory=TracingConfig, description="OpenTelemetry traces over OTLP/HTTP (off by default)."
    )
    state: StateConfig = Field(
        default_factory=StateConfig, description="Shared state for rate limits, caches and experiments."
    )
    clusters: dict[Name, ClusterConfig] = Field(min_length=1, description="Upstream clusters by name.")
    experiments: dict[Name, ExperimentConfig] = Field(
        default_factory=dict,
        description="Experiments by name (ab, canary, blue_green, shadow); a route's backend may name one.",
    )
    routes: tuple[RouteConfig, ...] = Field(
        min_length=1, description="Routes, tried in order; the first that matches takes the request."
    )
    processes: Annotated[Integer, Field(ge=1)] | Literal["auto"] = Field(
        default=1,
        description="Gateway processes sharing the listen port (SO_REUSEPORT) under one supervisor that "
        "serves the admin port; auto runs one per usable CPU. Rate limits and caches on the memory "
        "backend are then per process: state.backend redis shares them. Changes take a restart.",
    )
    mesh: MeshConfig | None = Field(
        default=None,
        description="Serve Envoy's ext_proc, ext_authz, rate limit and xDS (ADS) on one gRPC port "
        "(docs/mesh.md). Changes take a restart.",
    )

    @field_validator("mesh")
    @classmethod
    def _mesh_routes(cls, mesh: MeshConfig | None, info: ValidationInfo) -> MeshConfig | None:
        routes = info.data.get("routes")
        if mesh is None:
            return mesh
        problems: list[tuple[Path, str, Any]] = []
        if info.data.get("processes", 1) != 1:  # every process would bind the one gRPC port
            problems.append(((), "the mesh server runs in a single process: set processes: 1", mesh.port))
        if isinstance(routes, tuple):  # absent when the routes section itself is invalid
            names = [route.name for route in routes]
            problems.extend(
                ((section, name), f"unknown route {name!r} (known: {', '.join(names)})", name)
                for section, modes in (
                    ("request_body", mesh.request_body),
                    ("response_body", mesh.response_body),
                )
                for name in modes
                if name not in names
            )
        for section in ("listen", "admin"):
            other = info.data.get(section)
            if (
                isinstance(other, ListenConfig | AdminConfig)
                and other.port == mesh.port
                and _same_interface(other.host, mesh.host)
            ):
                message = f"{mesh.port} is also {section}.port on the same address"
                problems.append((("port",), message, mesh.port))
        if problems:
            raise errors_at(cls.__name__, problems)
        return mesh

    @field_validator("admin")
    @classmethod
    def _ports_differ(cls, admin: AdminConfig, info: ValidationInfo) -> AdminConfig:
        listen = info.data.get("listen")
        if (
            isinstance(listen, ListenConfig)
            and listen.port == admin.port
            and _same_interface(listen.host, admin.host)
        ):
            message = (
                f"{admin.port} is also listen.port on the same address: give the admin listener its own port"
            )
            raise errors_at(cls.__name__, [(("port",), message, admin.port)])
        return admin

    @field_validator("routes", mode="before")
    @classmethod
    def _default_names(cls, routes: Any) -> Any:
        """A route without a name is called route-<index>."""
        if not isinstance(routes, list | tuple):
            return routes
        return [
            {**route, "name": f"route-{index}"}
            if isinstance(route, dict) and route.get("name") is None
            else route
            for index, route in enumerate(routes)
        ]

    @field_validator("routes")
    @classmethod
    def _names_and_clusters(
        cls, routes: tuple[RouteConfig, ...], info: ValidationInfo
    ) -> tuple[RouteConfig, ...]:
        problems: list[tuple[Path, str, Any]] = []
        first_index: dict[str, int] = {}
        for index, route in enumerate(routes):
            earlier = first_index.setdefault(route.name, index)
            if earlier != index:
                message = f"duplicate route name {route.name!r} (also routes[{earlier}])"
                problems.append(((index, "name"), message, route.name))
        clusters = info.data.get("clusters")
        if isinstance(clusters, dict):  # absent when the clusters section itself is invalid
            for index, route in enumerate(routes):
                if route.backend.cluster is not None and route.backend.cluster not in clusters:
                    message = unknown_cluster_message(route.backend.cluster, list(clusters))
                    problems.append(((index, "backend", "cluster"), message, route.backend.cluster))
        if problems:
            raise errors_at(cls.__name__, problems)
        return routes


def unknown_cluster_message(name: str, known: list[str]) -> str:
    """``unknown cluster 'fraud-v3' (known: fraud-v1, fraud-v2)``, with a suggestion when one is clear."""
    suggestion = closest(name, known)
    known_list = ", ".join(sorted(known))
    if suggestion is not None:
        return f"unknown cluster {name!r} (did you mean {suggestion!r}? known: {known_list})"
    return f"unknown cluster {name!r} (known: {known_list})"


def _same_interface(a: str, b: str) -> bool:
    return a == b or a in _WILDCARD_HOSTS or b in _WILDCARD_HOSTS
