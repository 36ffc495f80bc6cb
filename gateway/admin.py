"""The admin listener: health, readiness, metrics, effective config, clusters, reload, endpoint control.

It runs on its own port (127.0.0.1 by default) with aiohttp: nothing here is on the data path. When a
token is configured, every `/admin/*` and `/metrics` request must carry `Authorization: Bearer TOKEN`.
Calls that change state pass the guard in `gateway.admin_guard` (JSON only; without a token, no
foreign Origin and a loopback Host); their bodies are checked by `gateway.admin_inputs`. The API is
described in `gateway.admin_openapi`, served at `/admin/openapi.json`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.openmetrics import exposition as openmetrics

from gateway.admin_experiments import add_experiment_routes
from gateway.admin_guard import mutation_guard
from gateway.admin_inputs import (
    Refused,
    endpoint_address,
    endpoint_grpc_port,
    endpoint_weight,
    json_object,
    required,
)
from gateway.admin_monitoring import add_monitoring_routes
from gateway.admin_openapi import openapi
from gateway.config_redaction import redact
from gateway.core.filters import InvalidatesCache
from plugins.monitor import MonitorFilter, model_report

if TYPE_CHECKING:
    from gateway.server import Gateway

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")
ALLOW_LINK_LOCAL_KEY: web.AppKey[bool] = web.AppKey("allow_link_local_endpoints")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status, content_type="application/json"
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


@web.middleware
async def _errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except Refused as exc:
        return _json(exc.body(), exc.status)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise


def auth_middleware(token: str) -> Any:
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def require_token(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.startswith(("/admin", "/metrics")):
            # aiohttp keeps undecodable header bytes as surrogates: encode them back, never fail.
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                return web.Response(
                    body=orjson.dumps({"error": "admin token required"}),
                    status=401,
                    content_type="application/json",
                    headers={"WWW-Authenticate": 'Bearer realm="turnout-admin"'},
                )
        return await handler(request)

    return require_token


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    if gateway.ready:
        return _json({"status": "ready"})
    return _json({"status": "draining" if gateway.draining else "starting"}, 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text; OpenMetrics, which carries the latency buckets' exemplars, to a scraper
    that asks for it (Prometheus does when its exemplar storage is on)."""
    gateway = request.app[GATEWAY_KEY]
    if "application/openmetrics-text" in request.headers.get("Accept", ""):
        body = openmetrics.generate_latest(gateway.registry)  # type: ignore[no-untyped-call]
        return web.Response(body=body, headers={"Content-Type": openmetrics.CONTENT_TYPE_LATEST})
    return web.Response(body=generate_latest(gateway.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def config(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    return _json(redact(gateway.runtime.config.model_dump(mode="json")))


async def clusters(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    out = {}
    for name, cluster in gateway.runtime.clusters.items():
        out[name] = {
            "protocol": cluster.protocol,
            "endpoints": cluster.endpoints.snapshot(),
            "circuit_breaker_rejections": cluster.breaker_rejections,
            "retries": cluster.retries,
        }
    return _json(out)


async def reload(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    errors = await gateway.reload("admin")
    if errors:
        return _error(
            400,
            "the new config was refused; the running config is unchanged",
            code="config_invalid",
            errors=errors,
        )
    return _json({"reloaded": True})


def _cluster_of(request: web.Request) -> tuple[Gateway, str]:
    gateway = request.app[GATEWAY_KEY]
    name = request.match_info["cluster"]
    if name not in gateway.runtime.clusters:
        known = ", ".join(sorted(gateway.runtime.clusters))
        raise Refused(404, f"unknown cluster '{name}' (known: {known})")
    return gateway, name


async def drain_endpoint(request: web.Request) -> web.Response:
    gateway, name = _cluster_of(request)
    address = request.match_info["address"]
    drain = request.match_info["action"] == "drain"
    if not gateway.set_drained(name, address, drain):
        return _error(404, f"cluster '{name}' has no endpoint {address}")
    return _json({"cluster": name, "endpoint": address, "drained": drain})


async def add_endpoint(request: web.Request) -> web.Response:
    gateway, name = _cluster_of(request)
    payload = json_object(await request.read())
    address = await endpoint_address(required(payload, "address"), request.app[ALLOW_LINK_LOCAL_KEY])
    weight = endpoint_weight(payload)
    grpc_port = endpoint_grpc_port(payload, address)
    problem = gateway.register_endpoint(name, address, weight, grpc_port)
    if problem:
        return _error(400, problem, field="address")
    answer: dict[str, Any] = {"cluster": name, "endpoint": address, "registered": True}
    if grpc_port is not None:
        answer["grpc_port"] = grpc_port
    return _json(answer, 201)


async def remove_endpoint(request: web.Request) -> web.Response:
    gateway, name = _cluster_of(request)
    address = request.match_info["address"]
    if not gateway.deregister_endpoint(name, address):
        return _error(404, f"cluster '{name}' has no endpoint {address}")
    return _json({"cluster": name, "endpoint": address, "registered": False})


async def invalidate_cache(request: web.Request) -> web.Response:
    """Drop cached answers of one model (?model=NAME) or of every model, on every caching route."""
    gateway = request.app[GATEWAY_KEY]
    model = request.query.get("model") or None
    removed = 0
    caches = 0
    for route in gateway.runtime.routes:
        for filter_ in route.filters.filters:
            if isinstance(filter_, InvalidatesCache):
                caches += 1
                removed += int(await filter_.invalidate(model))
    if not caches:
        return _error(404, "no route has a cache filter")
    return _json({"model": model, "removed": removed})


async def monitoring(request: web.Request) -> web.Response:
    """One model's monitoring report: drift per feature, outputs, per version and arm."""
    gateway = request.app[GATEWAY_KEY]
    model = request.match_info["model"]
    monitors = {
        id(filter_): filter_
        for route in gateway.runtime.routes
        for filter_ in route.filters.filters
        if isinstance(filter_, MonitorFilter)
    }
    report = model_report(monitors.values(), model)
    if report is None:
        return _error(404, f"no route monitors model '{model}'")
    return _json(report)


def build_admin_app(gateway: Gateway, token: str) -> web.Application:
    # Outermost first: the token, then the guard on state changes, then errors as JSON.
    middlewares = [mutation_guard(check_origin_and_host=not token), _errors_as_json]
    if token:
        middlewares.insert(0, auth_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[GATEWAY_KEY] = gateway
    # Read once, like the token: admin settings take effect on a restart, not a reload.
    app[ALLOW_LINK_LOCAL_KEY] = gateway.runtime.config.admin.allow_link_local_endpoints
    add_admin_routes(app)
    return app


def add_admin_routes(app: web.Application) -> None:
    """Every route of the admin API (each one described in `gateway.admin_openapi`)."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/openapi.json", openapi)
    app.router.add_get("/admin/config", config)
    app.router.add_get("/admin/clusters", clusters)
    app.router.add_post("/admin/reload", reload)
    app.router.add_post("/admin/cache/invalidate", invalidate_cache)
    app.router.add_get("/admin/monitoring/{model}", monitoring)
    add_monitoring_routes(app, lambda request: request.app[GATEWAY_KEY])
    add_experiment_routes(app, lambda request: request.app[GATEWAY_KEY])
    app.router.add_post("/admin/clusters/{cluster}/endpoints", add_endpoint)
    app.router.add_delete("/admin/clusters/{cluster}/endpoints/{address}", remove_endpoint)
    app.router.add_post(
        "/admin/clusters/{cluster}/endpoints/{address}/{action:drain|undrain}", drain_endpoint
    )
