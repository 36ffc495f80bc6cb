"""The admin listener: health, readiness, metrics, effective config, clusters, reload, endpoint control.

It runs on its own port (127.0.0.1 by default) with aiohttp: nothing here is on the data path. When a
token is configured, every `/admin/*` and `/metrics` request must carry `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.admin_experiments import add_experiment_routes

if TYPE_CHECKING:
    from gateway.server import Gateway

GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")

# Config keys whose values are secrets: shown as "***" by /admin/config.
SECRET_KEY_PARTS = ("token", "secret", "password", "api_key", "key_hash", "private")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status, content_type="application/json"
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": message, **extra}, status)


def _is_secret_key(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def redact(value: Any) -> Any:
    """A copy of a config tree with secret values replaced."""
    if isinstance(value, dict):
        return {
            k: "***" if v not in (None, "", [], {}) and _is_secret_key(k) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


@web.middleware
async def _errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise


def _auth_middleware(token: str) -> Any:
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
    gateway = request.app[GATEWAY_KEY]
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
        return _error(400, "the new config was refused; the running config is unchanged", errors=errors)
    return _json({"reloaded": True})


def _cluster_of(request: web.Request) -> tuple[Gateway, str]:
    gateway = request.app[GATEWAY_KEY]
    name = request.match_info["cluster"]
    if name not in gateway.runtime.clusters:
        known = ", ".join(sorted(gateway.runtime.clusters))
        raise web.HTTPNotFound(reason=f"unknown cluster '{name}' (known: {known})")
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
    try:
        payload = orjson.loads(await request.read())
        address = payload["address"]
        weight = int(payload.get("weight", 1))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return _error(400, 'body must be JSON like {"address": "127.0.0.1:8001", "weight": 1}')
    problem = gateway.register_endpoint(name, str(address), weight)
    if problem:
        return _error(400, problem)
    return _json({"cluster": name, "endpoint": address, "registered": True}, 201)


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
            invalidate = getattr(filter_, "invalidate", None)
            if invalidate is not None:
                caches += 1
                removed += int(await invalidate(model))
    if not caches:
        return _error(404, "no route has a cache filter")
    return _json({"model": model, "removed": removed})


def build_admin_app(gateway: Gateway, token: str) -> web.Application:
    middlewares = [_errors_as_json]
    if token:
        middlewares.insert(0, _auth_middleware(token))
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[GATEWAY_KEY] = gateway
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/config", config)
    app.router.add_get("/admin/clusters", clusters)
    app.router.add_post("/admin/reload", reload)
    app.router.add_post("/admin/cache/invalidate", invalidate_cache)
    add_experiment_routes(app, lambda request: request.app[GATEWAY_KEY])
    app.router.add_post("/admin/clusters/{cluster}/endpoints", add_endpoint)
    app.router.add_delete("/admin/clusters/{cluster}/endpoints/{address}", remove_endpoint)
    app.router.add_post(
        "/admin/clusters/{cluster}/endpoints/{address}/{action:drain|undrain}", drain_endpoint
    )
    return app
