"""The supervisor's admin port: one admin API for all the gateway processes of a host.

- `/healthz` answers while the supervisor runs; `/readyz` is ready when every process is.
- `/metrics` is the sum of every process's metrics (`gateway.metrics_sum`), plus the supervisor's
  own: processes running and ready, and restarts.
- `/admin/clusters` merges each process's view of its clusters: counts (in flight, requests,
  failures, ejections, retries, breaker rejections) are summed; an endpoint is healthy or available
  when it is in every process, and ejected or drained when it is in any; `processes_available`
  says in how many it is available.
- `/admin/processes` lists the processes: slot, pid, ready, restarts.
- `/admin/reload` checks the config once and refuses a bad one before any process reloads.
- Any other call that changes state (drain an endpoint, add one, invalidate a cache, ...) goes to
  every process, and the answer is the first refusal or else the first process's answer; any other
  read is answered by the first ready process.

The token and the browser guard are the gateway admin API's own (`gateway.admin`,
`gateway.admin_guard`); the processes' private sockets take the same token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.admin import auth_middleware
from gateway.admin_guard import MUTATING_METHODS, mutation_guard
from gateway.metrics_sum import sum_expositions
from gateway.supervisor_process import GatewayChild

if TYPE_CHECKING:
    from gateway.supervisor import Supervisor

SUPERVISOR_KEY: web.AppKey[Supervisor] = web.AppKey("supervisor")

# Endpoint fields that add up across processes; the rest of a snapshot is merged field by field below.
_SUMMED_ENDPOINT_FIELDS = ("inflight", "total_requests", "total_failures", "ejection_count", "queue_depth")
_SUMMED_CLUSTER_FIELDS = ("circuit_breaker_rejections", "retries")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_INDENT_2), status=status, content_type="application/json"
    )


async def _ask_all(
    children: list[GatewayChild], method: str, path: str, body: bytes = b"", content_type: str | None = None
) -> list[tuple[int, bytes, str] | None]:
    """Every process's answer, None for a process that did not answer."""

    async def one(child: GatewayChild) -> tuple[int, bytes, str] | None:
        try:
            return await child.request(method, path, body, content_type)
        except (OSError, TimeoutError):
            return None

    return list(await asyncio.gather(*(one(child) for child in children)))


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    if supervisor.stopping:
        return _json({"status": "draining"}, 503)
    answers = await _ask_all(supervisor.children, "GET", "/readyz")
    ready = sum(1 for answer in answers if answer is not None and answer[0] == 200)
    status = "ready" if supervisor.children and ready == len(supervisor.children) else "starting"
    return _json(
        {"status": status, "processes": len(supervisor.children), "ready": ready},
        200 if status == "ready" else 503,
    )


class _SupervisorCollector(Collector):
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor

    def collect(self) -> Iterator[Any]:
        children = self._supervisor.children
        running = GaugeMetricFamily("turnout_processes", "Gateway processes, by state", labels=["state"])
        running.add_metric(["configured"], float(self._supervisor.count))
        running.add_metric(["ready"], float(sum(1 for child in children if child.ready)))
        restarts = CounterMetricFamily(
            "turnout_process_restarts", "Gateway processes restarted after they died", labels=["process"]
        )
        for child in children:
            restarts.add_metric([str(child.index)], float(child.restarts))
        yield from (running, restarts)


async def metrics(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    answers = await _ask_all(supervisor.children, "GET", "/metrics")
    texts = [answer[1].decode() for answer in answers if answer is not None and answer[0] == 200]
    body = sum_expositions(texts, [_SupervisorCollector(supervisor)])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def merge_clusters(views: list[dict[str, Any]]) -> dict[str, Any]:
    """One `/admin/clusters` answer from several processes' answers (see the module docstring)."""
    merged: dict[str, Any] = {}
    for view in views:
        for name, cluster in view.items():
            into = merged.get(name)
            if into is None:
                into = merged[name] = {
                    "protocol": cluster["protocol"],
                    "endpoints": {},
                    **{key: 0 for key in _SUMMED_CLUSTER_FIELDS},
                }
            for key in _SUMMED_CLUSTER_FIELDS:
                into[key] += cluster.get(key, 0)
            for endpoint in cluster["endpoints"]:
                _merge_endpoint(into["endpoints"], endpoint)
    for cluster in merged.values():
        endpoints = list(cluster["endpoints"].values())
        for endpoint in endpoints:
            endpoint["ewma_ms"] = endpoint["ewma_ms"] / endpoint.pop("_seen")
        cluster["endpoints"] = endpoints
    return merged


def _merge_endpoint(into: dict[str, dict[str, Any]], endpoint: dict[str, Any]) -> None:
    seen = into.get(endpoint["address"])
    if seen is None:
        into[endpoint["address"]] = {
            **endpoint,
            "processes_available": int(endpoint["available"]),
            "_seen": 1,
        }
        return
    for key in _SUMMED_ENDPOINT_FIELDS:
        if endpoint.get(key) is not None:  # queue_depth is None until an endpoint reports one
            seen[key] = (seen.get(key) or 0) + endpoint[key]
    seen["healthy"] = seen["healthy"] and endpoint["healthy"]
    seen["available"] = seen["available"] and endpoint["available"]
    seen["ejected"] = seen["ejected"] or endpoint["ejected"]
    seen["drained"] = seen["drained"] or endpoint["drained"]
    seen["ejected_seconds_left"] = max(seen["ejected_seconds_left"], endpoint["ejected_seconds_left"])
    seen["processes_available"] += int(endpoint["available"])
    seen["ewma_ms"] += endpoint["ewma_ms"]  # averaged once every process is in
    seen["_seen"] += 1


async def clusters(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    answers = await _ask_all(supervisor.children, "GET", "/admin/clusters")
    views = [orjson.loads(answer[1]) for answer in answers if answer is not None and answer[0] == 200]
    if not views:
        return _json({"error": "no gateway process answered"}, 503)
    return _json(merge_clusters(views))


async def processes(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    return _json(
        [
            {"process": child.index, "pid": child.pid, "ready": child.ready, "restarts": child.restarts}
            for child in supervisor.children
        ]
    )


async def reload(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR_KEY]
    errors = await supervisor.reload("admin")
    if errors:
        return _json(
            {
                "error": "the new config was refused before any process reloaded; the running config "
                "is unchanged",
                "code": "config_invalid",
                "errors": errors,
            },
            400,
        )
    return _json({"reloaded": True, "processes": len(supervisor.children)})


async def forward(request: web.Request) -> web.Response:
    """Any other admin call: state changes go to every process, reads to the first that answers."""
    supervisor = request.app[SUPERVISOR_KEY]
    path = request.rel_url.raw_path_qs
    body = await request.read()
    content_type = request.headers.get("Content-Type")
    if request.method in MUTATING_METHODS:
        answers = await _ask_all(supervisor.children, request.method, path, body, content_type)
        if any(answer is None for answer in answers):
            return _json(
                {"error": "not every gateway process answered; the call may be applied in part"}, 503
            )
        refused = [answer for answer in answers if answer is not None and answer[0] >= 400]
        chosen = refused[0] if refused else answers[0]
    else:
        chosen = None
        for child in supervisor.children:
            try:
                chosen = await child.request(request.method, path, body, content_type)
                break
            except (OSError, TimeoutError):
                continue
    if chosen is None:
        return _json({"error": "no gateway process answered"}, 503)
    status, data, answer_type = chosen
    return web.Response(body=data, status=status, content_type=answer_type)


def build_supervisor_admin(supervisor: Supervisor, token: str) -> web.Application:
    middlewares = [mutation_guard(check_origin_and_host=not token)]
    if token:
        middlewares.insert(0, auth_middleware(token))
    # The gateway admin API's own limit on a request body.
    app = web.Application(middlewares=middlewares, client_max_size=1024 * 1024)
    app[SUPERVISOR_KEY] = supervisor
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/admin/clusters", clusters)
    app.router.add_get("/admin/processes", processes)
    app.router.add_post("/admin/reload", reload)
    app.router.add_route("*", "/admin/{tail:.*}", forward)
    return app
