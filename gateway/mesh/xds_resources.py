"""turnout's config and live state as xDS resources: what the ADS server hands out.

    turnout                       xDS
    cluster NAME                  Cluster NAME (EDS over ADS, round robin, the client's HTTP
                                  version upstream: HTTP/2 for gRPC) and its
                                  ClusterLoadAssignment: endpoints with HEALTHY / UNHEALTHY from
                                  turnout's health checks, ejections and drains
    route NAME -> cluster         Listener NAME (an API listener, for proxyless gRPC clients on
                                  xds:///NAME) and RouteConfiguration NAME: every call to the cluster
    route NAME -> experiment      the same, with weighted_clusters in the split's current shares (an
                                  A/B test's weights, a canary's step, a blue-green's active color)
    every route, in order         RouteConfiguration "turnout" for Envoy's listeners: first the
                                  cluster ext_proc chose (x-turnout-cluster), then each route's
                                  path or prefix with its cluster or weighted clusters, and for a
                                  route with rate limits the descriptor RLS maps back to them

The shares are the split's (assignment by unit stays turnout's own, through ext_proc); an xDS client
that balances by weight alone sends about the same fractions. Weights are integers out of
`TOTAL_WEIGHT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, wrappers_pb2

from experiments.splits import AbSplit, BlueGreenSplit, CanarySplit, ShadowSplit, SplitStatus

if TYPE_CHECKING:
    from gateway.route import CompiledRoute
    from gateway.runtime import Runtime

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
TYPES = (LISTENER, ROUTE, CLUSTER, ENDPOINTS)
ENVOY_ROUTE_CONFIG = "turnout"
"""The RouteConfiguration Envoy's own listeners name (RDS over ADS)."""
# Weights out of 10,000: a canary step of 0.01 % still gets a weight of its own.
TOTAL_WEIGHT = 10_000

Resources = dict[str, dict[str, Any]]
"""type URL -> resource name -> message."""


def _ads() -> Any:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(), resource_api_version=config_source_pb2.V3
    )


def _packed(message: Any) -> Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def cluster_weights(runtime: Runtime, experiment: str) -> dict[str, float]:
    """The share of requests each cluster gets from the experiment now; {} when it is not running."""
    service = runtime.experiments
    split = service.splits.get(experiment) if service is not None else None
    if split is None:
        return {}
    shares: Mapping[str, float]
    if isinstance(split, AbSplit):
        state = split.state
        if state.status is not SplitStatus.RUNNING:
            shares = {state.winner or split.control: 1.0}
        else:  # units outside the coverage get the control
            covered = state.coverage / 100.0
            shares = {arm: share * covered for arm, share in split.shares().items()}
            shares = {**shares, split.control: shares.get(split.control, 0.0) + 1.0 - covered}
    elif isinstance(split, CanarySplit | BlueGreenSplit):
        shares = split.shares()
    elif isinstance(split, ShadowSplit):  # the primary takes every request, the mirrors get copies
        return {split.primary_cluster: 1.0}
    else:
        return {}
    weights: dict[str, float] = {}
    for arm, share in shares.items():
        cluster = split.clusters[arm]
        weights[cluster] = weights.get(cluster, 0.0) + share
    return weights


def route_action(runtime: Runtime, route: CompiledRoute) -> Any | None:
    """The route's target as an xDS RouteAction; None for a feedback route (no upstream)."""
    if route.cluster is not None:
        return route_components_pb2.RouteAction(cluster=route.cluster.name)
    if route.experiment is None:
        return None
    weights = cluster_weights(runtime, route.experiment)
    integer = {name: round(share * TOTAL_WEIGHT) for name, share in weights.items()}
    entries = [
        route_components_pb2.WeightedCluster.ClusterWeight(
            name=name, weight=wrappers_pb2.UInt32Value(value=w)
        )
        for name, w in sorted(integer.items())
        if w > 0
    ]
    if not entries:
        return None
    if len(entries) == 1:
        return route_components_pb2.RouteAction(cluster=entries[0].name)
    return route_components_pb2.RouteAction(
        weighted_clusters=route_components_pb2.WeightedCluster(clusters=entries)
    )


def _api_listener(name: str) -> Any:
    manager = hcm.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm.Rds(route_config_name=name, config_source=_ads()),
        http_filters=[
            hcm.HttpFilter(name="envoy.filters.http.router", typed_config=_packed(router_pb2.Router()))
        ],
    )
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=_packed(manager))
    )


def _route_configuration(name: str, routes: list[Any]) -> Any:
    host = route_components_pb2.VirtualHost(name=name, domains=["*"], routes=routes)
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[host])


def _envoy_routes(runtime: Runtime) -> list[Any]:
    """Envoy's routes: the cluster ext_proc chose when it set the header, else turnout's routes."""
    chosen = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(
            prefix="/",
            headers=[route_components_pb2.HeaderMatcher(name="x-turnout-cluster", present_match=True)],
        ),
        route=route_components_pb2.RouteAction(cluster_header="x-turnout-cluster"),
    )
    routes = [chosen]
    for route in runtime.routes:
        action = route_action(runtime, route)
        match_config = next((r.match for r in runtime.config.routes if r.name == route.name), None)
        if action is None or match_config is None:
            continue
        if match_config.path is not None:
            match = route_components_pb2.RouteMatch(path=match_config.path)
        else:
            match = route_components_pb2.RouteMatch(prefix=match_config.prefix or "/")
        if any(f.name.partition("#")[0] == "rate_limit" for f in route.filters.filters):
            action.rate_limits.append(_rate_limit(route.name))
        routes.append(route_components_pb2.Route(name=route.name, match=match, route=action))
    return routes


def _rate_limit(route: str) -> Any:
    """Envoy asks the rate limit service with the turnout route's name and the client's address
    (gateway/mesh/rls.py maps both)."""
    action = route_components_pb2.RateLimit.Action
    return route_components_pb2.RateLimit(
        actions=[
            action(generic_key=action.GenericKey(descriptor_key="route", descriptor_value=route)),
            action(remote_address=action.RemoteAddress()),
        ]
    )


# Envoy speaks to the upstream in the client's protocol: HTTP/2 for gRPC calls, HTTP/1.1 for REST.
_HTTP_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_SAME_AS_DOWNSTREAM = http_protocol_options_pb2.HttpProtocolOptions(
    use_downstream_protocol_config=http_protocol_options_pb2.HttpProtocolOptions.UseDownstreamHttpConfig(
        http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
        http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
    )
)


def _cluster(name: str) -> Any:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=_ads()),
        lb_policy=cluster_pb2.Cluster.ROUND_ROBIN,
    )
    cluster.typed_extension_protocol_options[_HTTP_OPTIONS_KEY].Pack(_SAME_AS_DOWNSTREAM)
    return cluster


def _assignment(runtime: Runtime, name: str, now: float) -> Any:
    lb_endpoints = []
    for endpoint in runtime.clusters[name].endpoints.endpoints:
        healthy = endpoint.is_available(now)
        lb_endpoints.append(
            endpoint_components_pb2.LbEndpoint(
                endpoint=endpoint_components_pb2.Endpoint(
                    address=address_pb2.Address(
                        socket_address=address_pb2.SocketAddress(
                            address=endpoint.host, port_value=endpoint.port
                        )
                    )
                ),
                health_status=health_check_pb2.HEALTHY if healthy else health_check_pb2.UNHEALTHY,
                load_balancing_weight=wrappers_pb2.UInt32Value(value=endpoint.weight),
            )
        )
    # gRPC's xDS client drops localities without a weight: one locality of weight 1 holds them all.
    locality = endpoint_components_pb2.LocalityLbEndpoints(
        locality=base_pb2.Locality(),
        lb_endpoints=lb_endpoints,
        load_balancing_weight=wrappers_pb2.UInt32Value(value=1),
    )
    return endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[locality])


def build_resources(runtime: Runtime, now: float) -> Resources:
    """Every resource turnout exports now, by type and name."""
    listeners: dict[str, Any] = {}
    route_configs: dict[str, Any] = {
        ENVOY_ROUTE_CONFIG: _route_configuration(ENVOY_ROUTE_CONFIG, _envoy_routes(runtime))
    }
    for route in runtime.routes:
        action = route_action(runtime, route)
        if action is None:
            continue
        listeners[route.name] = _api_listener(route.name)
        whole = route_components_pb2.Route(match=route_components_pb2.RouteMatch(prefix=""), route=action)
        route_configs[route.name] = _route_configuration(route.name, [whole])
    clusters = {name: _cluster(name) for name in runtime.clusters}
    assignments = {name: _assignment(runtime, name, now) for name in runtime.clusters}
    return {LISTENER: listeners, ROUTE: route_configs, CLUSTER: clusters, ENDPOINTS: assignments}


def state_key(runtime: Runtime, now: float) -> tuple[object, ...]:
    """Changes whenever what `build_resources` returns could: the runtime (a reload), a split's
    revision, an endpoint's membership or availability. Cheap enough to compare often."""
    service = runtime.experiments
    revisions = (
        tuple(sorted((n, s.state_dict().get("revision")) for n, s in service.splits.items()))
        if service
        else ()
    )
    endpoints = tuple(
        (name, tuple((e.address, e.weight, e.is_available(now)) for e in cluster.endpoints.endpoints))
        for name, cluster in runtime.clusters.items()
    )
    return (id(runtime), revisions, endpoints)
