"""The worker's Open Inference Protocol REST API on aiohttp.

Every error leaves as `{"error": "<what and where>", "code": ...}` with the status of its gateway
error class; aiohttp's own HTTP errors (no such route, body too large) are answered the same way,
and anything unexpected becomes a logged 500 rather than a dropped connection. Infer responses carry
the worker's load (`x-turnout-queue-depth`, `x-turnout-inflight`) for the gateway's balancers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.core.errors import BadRequest, GatewayError, error_body
from gateway.core.protocols.binary import HEADER_LENGTH
from gateway.core.protocols.oip_v2 import JSON_CONTENT_TYPE, decode_request, encode_response
from inference_workers.metrics import WorkerMetrics
from inference_workers.service import InferenceService

log = logging.getLogger(__name__)

SERVICE: Final = web.AppKey("service", InferenceService)
METRICS: Final = web.AppKey("metrics", WorkerMetrics)

QUEUE_DEPTH_HEADER: Final = "x-turnout-queue-depth"
INFLIGHT_HEADER: Final = "x-turnout-inflight"
# Large enough for a batch of 64 images of 224x224x3 FP32 (about 38 MiB) in one request; aiohttp's
# default of 1 MiB would refuse ordinary batched tensors.
MAX_BODY_BYTES: Final = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(service: InferenceService, metrics: WorkerMetrics) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[_errors_as_json])
    app[SERVICE] = service
    app[METRICS] = metrics
    app.router.add_get("/v2/health/live", _live)
    app.router.add_get("/v2/health/ready", _ready)
    app.router.add_get("/v2", _server_metadata)
    for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        app.router.add_get(prefix, _model_metadata)
        app.router.add_get(prefix + "/ready", _model_ready)
        app.router.add_post(prefix + "/infer", _infer)
    app.router.add_post("/v2/repository/index", _repository_index)
    app.router.add_post("/v2/repository/models/{model}/load", _repository_load)
    app.router.add_post("/v2/repository/models/{model}/unload", _repository_unload)
    app.router.add_get("/metrics", _metrics)
    return app


@web.middleware
async def _errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        return _error(exc.status, exc.body(), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = f"{exc.reason}: {request.method} {request.path}"
        return _error(exc.status, error_body(exc.status, message, "http_error"), {})
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, error_body(500, "internal error in the worker", "internal"), {})


async def _infer(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    try:
        body = await request.read()
        decoded = decode_request(body, request.headers.get(HEADER_LENGTH))
        response = await service.infer(
            request.match_info["model"], request.match_info.get("version"), decoded
        )
        binary = [output.name for output in response.outputs if decoded.wants_binary(output.name)]
        encoded = encode_response(response, binary)
    except GatewayError as exc:
        return _error(exc.status, exc.body(), {**exc.headers, **_load_headers(service)})
    headers = {"Content-Type": encoded.content_type, **_load_headers(service)}
    if encoded.header_length is not None:
        headers[HEADER_LENGTH] = str(encoded.header_length)
    return web.Response(body=encoded.body, headers=headers)


async def _live(request: web.Request) -> web.Response:
    live = request.app[SERVICE].is_live()
    return _json({"live": live}, 200 if live else 503)


async def _ready(request: web.Request) -> web.Response:
    ready = request.app[SERVICE].is_ready()
    return _json({"ready": ready}, 200 if ready else 503)


async def _server_metadata(request: web.Request) -> web.Response:
    return _json(request.app[SERVICE].server_metadata())


async def _model_metadata(request: web.Request) -> web.Response:
    metadata = request.app[SERVICE].model_metadata(
        request.match_info["model"], request.match_info.get("version")
    )
    return _json(metadata.as_json())


async def _model_ready(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    ready = request.app[SERVICE].is_model_ready(name, request.match_info.get("version"))
    return _json({"name": name, "ready": ready}, 200 if ready else 503)


async def _repository_index(request: web.Request) -> web.Response:
    options = await _optional_json(request)
    ready_only = options.get("ready") is True
    repository = request.app[SERVICE].repository
    repository.rescan()
    entries = [entry for entry in repository.index() if not ready_only or entry["state"] == "READY"]
    return _json(entries)


async def _repository_load(request: web.Request) -> web.Response:
    version = _version_parameter(await _optional_json(request))
    slots = await request.app[SERVICE].repository.load(request.match_info["model"], version)
    return _json({"name": request.match_info["model"], "loaded": [str(slot.version) for slot in slots]})


async def _repository_unload(request: web.Request) -> web.Response:
    version = _version_parameter(await _optional_json(request))
    slots = await request.app[SERVICE].repository.unload(request.match_info["model"], version)
    return _json({"name": request.match_info["model"], "unloaded": [str(slot.version) for slot in slots]})


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _optional_json(request: web.Request) -> dict[str, Any]:
    """The JSON object a repository call may carry; an empty body means no options."""
    body = await request.read()
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("request body must be a JSON object")
    return document


def _version_parameter(options: dict[str, Any]) -> str | None:
    """Our extension to the repository API: `{"parameters": {"version": "2"}}` targets one version."""
    parameters = options.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be a JSON object")
    version = parameters.get("version")
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise BadRequest("parameters.version must be a version number")
    return str(version)


def _load_headers(service: InferenceService) -> dict[str, str]:
    return {QUEUE_DEPTH_HEADER: str(service.load.waiting), INFLIGHT_HEADER: str(service.load.running)}


def _json(document: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(document), status=status, content_type=JSON_CONTENT_TYPE)


def _error(status: int, body: bytes, headers: Mapping[str, str]) -> web.Response:
    return web.Response(body=body, status=status, headers={**headers, "Content-Type": JSON_CONTENT_TYPE})
