"""Compiles a validated config into the objects the data path uses, and owns their lifecycle.

A reload builds a new `Runtime` beside the running one. Clusters whose config did not change are
carried over as the same objects (their endpoint health, in-flight counts, pools and health checks
continue untouched); changed clusters are rebuilt and adopt the state of endpoints they keep.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from experiments.config import experiment_clusters
from gateway.access_log import AccessLog
from gateway.batch_upstream import batch_upstream
from gateway.cluster import BackgroundTask, ClusterRuntime, PoolSettings
from gateway.config import (
    AnyBalancer,
    ClusterConfig,
    ConsistentHashBalancer,
    GatewayConfig,
    LeastRequestBalancer,
    PeakEwmaBalancer,
    RetryConfig,
    RouteConfig,
)
from gateway.config import HeaderMatch as HeaderMatchConfig
from gateway.config.errors import BuildError, describe_exception
from gateway.config.models.balancer import LeastLoadBalancer
from gateway.config.models.endpoint import grpc_ports
from gateway.core.context import RequestContext
from gateway.core.errors import ServiceUnavailable
from gateway.core.filters import ReadsUpstreamPath, UpstreamLayer, UsesModelMetadata
from gateway.experiments_runtime import ExperimentsService
from gateway.filter_chain import FilterChain
from gateway.filters_config import build_filters
from gateway.http.headers import HeaderRules
from gateway.internal_client import send_to_cluster
from gateway.observability import GatewayMetrics
from gateway.route import CompiledRoute, PrefixRewrite
from gateway.tracing import Tracing
from routing.balancers import BalancerFactory, make_balancer_factory
from routing.discovery.dns import DnsDiscovery
from routing.discovery.pool_file import PoolFileDiscovery
from routing.discovery.static import parse_address
from routing.endpoint_set import EndpointSet
from routing.endpoints import Endpoint
from routing.health.active import HttpHealthChecker
from routing.health.load_scraper import LoadScraper
from routing.health.outlier import OutlierDetector
from routing.resilience.circuit_breaker import CircuitBreaker
from routing.resilience.model_errors import ModelErrorPolicy
from routing.resilience.retry import RetryPolicy
from routing.router import HeaderMatch, Router, RouteRule


@dataclass(eq=False)
class Runtime:
    config: GatewayConfig
    router: Router[CompiledRoute]
    clusters: dict[str, ClusterRuntime]
    routes: list[CompiledRoute]
    metrics: GatewayMetrics
    access_log: AccessLog | None
    _carried_over: set[str] = field(default_factory=set)
    experiments: ExperimentsService | None = None
    _carried_chains: set[int] = field(default_factory=set)
    """ids of the filter chains taken over, already started, from the runtime this one replaced."""
    tracing: Tracing | None = None
    """The tracer when `tracing:` is on; carried over by a reload that leaves that section alone."""

    def log_request(self, ctx: RequestContext, route: CompiledRoute | None, total: float) -> None:
        if self.access_log is not None:
            self.access_log.log(ctx, total)

    async def start(self) -> None:
        if self.tracing is not None:
            self.tracing.open()  # nothing when carried over, already open
        for name, cluster in self.clusters.items():
            if name not in self._carried_over:
                await cluster.start()
        for route in self.routes:
            if id(route.filters) not in self._carried_chains:
                await route.filters.start()

    async def stop(self) -> None:
        for route in self.routes:
            await route.filters.stop()
        for cluster in self.clusters.values():
            await cluster.stop()
        if self.tracing is not None:
            await self.tracing.close()

    async def stop_replaced(self, successor: Runtime) -> None:
        """Stop the clusters the successor did not carry over. Requests still in flight on them finish
        normally: closing a pool closes only its idle connections, and busy ones close when released."""
        kept = {id(route.filters) for route in successor.routes}
        for route in self.routes:
            if id(route.filters) not in kept:
                await route.filters.stop()
        for name, cluster in self.clusters.items():
            if successor.clusters.get(name) is not cluster:
                await cluster.stop()
        if self.tracing is not None and successor.tracing is not self.tracing:
            await self.tracing.close()


def _fingerprint(cluster: ClusterConfig) -> str:
    return hashlib.sha256(
        orjson.dumps(cluster.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    ).hexdigest()


# The config's retry condition names -> the retry policy's (Envoy's) names.
_RETRY_CONDITION_NAMES = {"connect_failure": "connect-failure", "reset": "reset", "timeout": "timeout"}


def build_retry_policy(retry: RetryConfig) -> RetryPolicy:
    return RetryPolicy(
        attempts=retry.attempts + 1,  # the config counts retries, the policy counts every try
        retry_on=frozenset(_RETRY_CONDITION_NAMES.get(str(kind), str(kind)) for kind in retry.on),
        budget_percent=retry.budget_percent,
        min_retry_concurrency=retry.min_retry_concurrency,
        backoff_base=retry.backoff_base,
        backoff_max=retry.backoff_max,
    )


def build_cluster(name: str, config: ClusterConfig, previous: ClusterRuntime | None) -> ClusterRuntime:
    static: list[Endpoint] = []
    dns_names: list[tuple[str, int, int]] = []
    for entry in config.endpoints:
        host, port = parse_address(entry.address)
        if _is_ip(host):
            static.append(Endpoint(host, port, entry.weight))
        else:
            dns_names.append((host, port, entry.weight))
    outlier = config.outlier
    detector = (
        OutlierDetector(
            consecutive_failures=outlier.consecutive_failures,
            base_ejection_time=outlier.base_ejection_time,
            max_ejection_time=outlier.max_ejection_time,
            max_ejection_percent=outlier.max_ejection_percent,
        )
        if outlier.consecutive_failures > 0  # 0 turns ejection off
        else None
    )
    endpoint_set = EndpointSet(
        name,
        static,
        balancer_factory(config.balancer, sum(e.weight for e in config.endpoints)),
        panic_threshold_percent=config.panic_threshold,
        slow_start=config.slow_start,
        outlier=detector,
    )
    if previous is not None:
        endpoint_set.adopt_state_from(previous.endpoints)
    background: list[BackgroundTask] = []
    if dns_names:
        background.append(DnsDiscovery(endpoint_set, dns_names, config.dns_refresh))
    if config.discovery is not None:
        background.append(
            PoolFileDiscovery(endpoint_set, Path(config.discovery.file), config.discovery.poll_interval)
        )
    if isinstance(config.balancer, LeastLoadBalancer):
        load = config.balancer
        background.append(
            LoadScraper(
                endpoint_set,
                load.metrics_path,
                load.interval,
                load.queue_metrics,
                load.kv_cache_metrics,
                load.kv_cache_weight,
            )
        )
    if config.health is not None and config.health.type == "grpc":
        from routing.grpc_address import GrpcAddresses
        from routing.health.grpc_check import GrpcHealthChecker

        health = config.health
        background.append(
            GrpcHealthChecker(
                endpoint_set,
                health.service,
                GrpcAddresses(grpc_ports(config.endpoints), endpoint_set.get),
                interval=health.interval,
                jitter=health.jitter,
                timeout=health.timeout,
                unhealthy_threshold=health.unhealthy_threshold,
                healthy_threshold=health.healthy_threshold,
            )
        )
    elif config.health is not None:
        health = config.health
        background.append(
            HttpHealthChecker(
                endpoint_set,
                path=health.path,
                interval=health.interval,
                jitter=health.jitter,
                timeout=health.timeout,
                unhealthy_threshold=health.unhealthy_threshold,
                healthy_threshold=health.healthy_threshold,
                expected_statuses=tuple(health.expected_statuses),
            )
        )
    retry = build_retry_policy(config.retry)
    return ClusterRuntime(
        name=name,
        protocol=config.protocol,
        endpoints=endpoint_set,
        breaker=CircuitBreaker(config.circuit_breaker.max_concurrent, config.circuit_breaker.max_pending),
        retry=retry,
        request_timeout=config.timeouts.request,
        pool_settings=PoolSettings(
            config.max_connections_per_endpoint, config.timeouts.connect, config.timeouts.idle
        ),
        fingerprint=_fingerprint(config),
        background=background,
        model_errors=(
            ModelErrorPolicy(config.model_errors.statuses, config.model_errors.markers)
            if config.model_errors is not None
            else None
        ),
        prefix_affinity=config.balancer.prefix_affinity
        if isinstance(config.balancer, LeastLoadBalancer)
        else None,
    )


def _located_cluster(name: str, config: ClusterConfig, previous: ClusterRuntime | None) -> ClusterRuntime:
    """`build_cluster`, with whatever it refuses pinned on the cluster's section of the file."""
    try:
        return build_cluster(name, config, previous)
    except Exception as exc:
        raise BuildError(("clusters", name), f"cannot build: {describe_exception(exc)}") from exc


def balancer_factory(config: AnyBalancer, total_weight: int) -> BalancerFactory:
    """The balancer factory for a balancer config section (`total_weight`: of the configured
    endpoints, to spread a ring's points over them)."""
    options: dict[str, Any] = {}
    if isinstance(config, LeastRequestBalancer):
        options["choice_count"] = config.choice_count
    elif isinstance(config, PeakEwmaBalancer):
        options["decay"] = config.decay
    elif isinstance(config, ConsistentHashBalancer):
        options["key"] = config.hash_on
        options["algorithm"] = config.method
        if config.method == "ring":
            options["vnodes_per_weight"] = max(1, -(-config.ring_size // max(total_weight, 1)))
    return make_balancer_factory(config.type, **options)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _route_rule(route: RouteConfig, compiled: CompiledRoute) -> RouteRule[CompiledRoute]:
    match = route.match
    headers = tuple(_header_match(name, spec) for name, spec in match.headers.items())
    return RouteRule(
        name=route.name,
        path=match.path,
        prefix=match.prefix,
        regex=match.regex.pattern if match.regex is not None else None,
        methods=frozenset(match.methods) if match.methods else None,
        host=match.host,
        headers=headers,
        model=match.model,
        version=match.version,
        # An experiment's arms may speak different protocols: its paths are read in every layout.
        protocol=compiled.cluster.protocol if compiled.cluster is not None else "http",
        payload=compiled,
    )


def _attach_layer(route: CompiledRoute, clusters: list[ClusterRuntime]) -> UpstreamLayer | None:
    """The route's upstream layer (batching), given a sender for each cluster the route can reach."""
    for filter_ in route.filters.filters:
        if isinstance(filter_, UpstreamLayer):
            for cluster in clusters:
                retry = route.retry if route.retry is not None else cluster.retry
                timeout = route.timeout if route.timeout is not None else cluster.request_timeout
                filter_.attach_upstream(cluster.name, batch_upstream(cluster, retry, timeout))
            return filter_
    return None


def _attach_metadata(route: CompiledRoute, clusters: list[ClusterRuntime]) -> None:
    """Filters that validate requests against model metadata fetch it from the route's own cluster
    (unless their config names another source)."""
    if not clusters:
        return
    cluster = clusters[0]
    for filter_ in route.filters.filters:
        if isinstance(filter_, UsesModelMetadata) and not filter_.has_metadata_source:
            filter_.set_metadata_fetcher(metadata_fetcher(cluster))
        if route.rewrite is not None and isinstance(filter_, ReadsUpstreamPath):
            filter_.use_upstream_path(route.rewrite.apply)


def metadata_fetcher(
    cluster: ClusterRuntime,
) -> Callable[[str, str | None], Awaitable[dict[str, Any] | None]]:
    """GET /v2/models/{model}[/versions/{v}] on the cluster; None when the model is unknown there."""

    async def fetch(model: str, version: str | None) -> dict[str, Any] | None:
        path = f"/v2/models/{quote(model, safe='')}"
        if version:
            path += f"/versions/{quote(version, safe='')}"
        reply = await send_to_cluster(cluster, "GET", path, (), b"", cluster.retry, cluster.request_timeout)
        if reply.status == 404:
            # A server that answers GET /v2 speaks OIP v2 metadata and does not know the model; one
            # that does not (TorchServe's v2 envelope) publishes no metadata at all.
            server = await send_to_cluster(
                cluster, "GET", "/v2", (), b"", cluster.retry, cluster.request_timeout
            )
            if server.status == 200:
                return None
            raise ServiceUnavailable(
                f"model metadata for '{model}': the upstream publishes none (GET /v2 {server.status})"
            )
        if reply.status != 200:
            raise ServiceUnavailable(f"model metadata for '{model}': upstream answered {reply.status}")
        document = orjson.loads(reply.body)
        return document if isinstance(document, dict) else None

    return fetch


def _experiment_clusters(config: GatewayConfig, name: str | None) -> list[str]:
    if name is None or name not in config.experiments:
        return []
    return experiment_clusters(config.experiments[name])


def _header_match(name: str, spec: HeaderMatchConfig) -> HeaderMatch:
    if spec.exact is not None:
        return HeaderMatch(name, "exact", spec.exact)
    if spec.regex is not None:
        return HeaderMatch(name, "regex", spec.regex.pattern)
    return HeaderMatch(name, "present" if spec.present else "absent")


def build_runtime(
    config: GatewayConfig,
    metrics: GatewayMetrics,
    access_log: AccessLog | None,
    previous: Runtime | None,
    base_dir: Path = Path(),
    experiments: ExperimentsService | None = None,
) -> Runtime:
    clusters: dict[str, ClusterRuntime] = {}
    carried: set[str] = set()
    tracing = _tracing(config, previous)
    for name, cluster_config in config.clusters.items():
        old = previous.clusters.get(name) if previous else None
        if old is not None and old.fingerprint == _fingerprint(cluster_config):
            clusters[name] = old
            carried.add(name)
        else:
            clusters[name] = _located_cluster(name, cluster_config, old)
    routes: list[CompiledRoute] = []
    rules: list[RouteRule[CompiledRoute]] = []
    previous_routes = {route.name: route for route in previous.routes} if previous else {}
    carried_chains: set[int] = set()
    for index, route in enumerate(config.routes):
        backend = route.backend
        cluster = clusters[backend.cluster] if backend.cluster is not None else None
        if cluster is not None:
            label = cluster.name
        elif backend.experiment is not None:
            label = f"experiment:{backend.experiment}"
        else:
            label = "feedback"
        reachable = (
            [cluster]
            if cluster is not None
            else [clusters[name] for name in _experiment_clusters(config, backend.experiment)]
        )
        key = (*_chain_key(route, label, reachable, config.state.redis_url, base_dir), id(tracing))
        before = previous_routes.get(route.name)
        if before is not None and before.chain_key == key and _keeps_state(before.filters):
            filters = before.filters
            carried_chains.add(id(filters))
        else:
            before = None
            filters = build_filters(
                route, index, label, metrics.registry, base_dir, config.state.redis_url, metrics, tracing
            )
        compiled = CompiledRoute(
            name=route.name,
            cluster=cluster,
            retry=build_retry_policy(route.retry) if route.retry is not None else None,
            timeout=route.timeout,
            request_headers=HeaderRules.build(route.request_headers.add, route.request_headers.remove),
            response_headers=HeaderRules.build(route.response_headers.add, route.response_headers.remove),
            rewrite=PrefixRewrite(route.match.prefix, route.rewrite.prefix)
            if route.rewrite is not None
            and route.rewrite.prefix is not None
            and route.match.prefix is not None
            else None,
            model_rewrite=route.rewrite.model if route.rewrite is not None else None,
            metrics=metrics.for_route(route.name, label),
            filters=filters,
            experiment=backend.experiment,
            feedback=backend.feedback,
            chain_key=key,
        )
        if before is not None:
            compiled.layer = before.layer  # already attached to these very clusters
        else:
            compiled.layer = _attach_layer(compiled, reachable)
            _attach_metadata(compiled, reachable)
        routes.append(compiled)
        rules.append(_route_rule(route, compiled))
    return Runtime(
        config,
        Router(rules),
        clusters,
        routes,
        metrics,
        access_log,
        carried,
        experiments,
        carried_chains,
        tracing,
    )


def _tracing(config: GatewayConfig, previous: Runtime | None) -> Tracing | None:
    """The tracer for `config`: the previous runtime's when its `tracing:` is the same."""
    if not config.tracing.enabled:
        return None
    if previous is not None and previous.tracing is not None and previous.tracing.config == config.tracing:
        return previous.tracing
    return Tracing(config.tracing)


def _chain_key(
    route: RouteConfig, label: str, reachable: list[ClusterRuntime], redis_url: str | None, base_dir: Path
) -> tuple[object, ...]:
    """Everything a route's filter chain is built from or bound to: its filters' options as written,
    the route's retry and timeout (a batching layer sends with them), the clusters it reaches (by
    identity: a rebuilt cluster means new senders), the shared Redis and the base directory."""
    built_from = route.model_dump(mode="json", include={"filters", "retry", "timeout"})
    return (
        orjson.dumps(built_from, option=orjson.OPT_SORT_KEYS),
        label,
        tuple((cluster.name, id(cluster)) for cluster in reachable),
        redis_url,
        str(base_dir),
    )


def _keeps_state(chain: FilterChain) -> bool:
    """Whether a chain may outlive a reload: every filter says it is built from its options alone
    (a third-party filter, or one that reads a file when built, is rebuilt every time), and none
    failed to start (a reload is the way to try again)."""
    return chain.broken is None and all(f.keeps_state_across_reloads for f in chain.filters)
