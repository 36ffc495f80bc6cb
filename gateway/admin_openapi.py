"""The admin API described in OpenAPI 3.0, served at `GET /admin/openapi.json`.

This document is maintained by hand beside the handlers it describes: a test checks that every
route registered on the admin application is described here, and a schemathesis run checks the
running gateway against it. When a handler changes what it takes or answers, change it here too.
"""

from __future__ import annotations

from typing import Any, Final

import orjson
from aiohttp import web

from gateway.admin_inputs import MAX_ARM_WEIGHT, MAX_ENDPOINT_WEIGHT, MAX_PORT

Json = dict[str, Any]

_JSON: Final = "application/json"


def _ref(name: str) -> Json:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: Json | None = None, media: str = _JSON) -> Json:
    return {"description": description, "content": {media: {"schema": schema or {"type": "object"}}}}


def _error(description: str) -> Json:
    return _answer(description, _ref("Error"))


def _path(name: str, description: str) -> Json:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _body(schema: Json, description: str, required: bool = True) -> Json:
    return {"required": required, "description": description, "content": {_JSON: {"schema": schema}}}


# Every call that changes state takes a JSON body; calls that need no data take `{}` (or none).
_NO_DATA: Final = _body(
    {"type": "object", "description": "Ignored."},
    "No data is needed; the body may be empty or {}, but the Content-Type must be application/json.",
    required=False,
)
# Answers every state-changing call may get, whatever it does: refused by the admin guard or token.
_MUTATION_REFUSALS: Final = {
    "401": _error("An admin token is configured and the request does not carry it."),
    "403": _error("No token is configured and the Origin or Host header is not the admin listener's own."),
    "413": _error("The body is over 1 MiB."),
    "415": _error("The Content-Type is not application/json."),
}
# One input row of a model: its features' values in column order.
_ROW: Final = {"type": "array", "items": {"type": "number"}}
_READ_REFUSALS: Final = {"401": _error("An admin token is configured and the request does not carry it.")}


def _read(summary: str, ok: Json, **more: Json) -> Json:
    return {"get": {"summary": summary, "responses": {"200": ok, **_READ_REFUSALS, **more}}}


def _change(summary: str, body: Json, ok: tuple[str, Json], **more: Json) -> Json:
    status, answer = ok
    return {
        "summary": summary,
        "requestBody": body,
        "responses": {
            status: answer,
            "400": _error("A field is missing or out of range."),
            **_MUTATION_REFUSALS,
            **more,
        },
    }


_EXPERIMENT: Final = _path("name", "The experiment's name in the config.")
_EXPERIMENT_STATE: Final = _answer("The experiment's new state and arm shares.", _ref("ExperimentState"))
_EXPERIMENT_404: Final = _error("No experiment is configured, or none has this name.")
_EXPERIMENT_409: Final = _error("Not possible in the current state, or another replica changed it first.")


def _experiment_action(summary: str, body: Json) -> Json:
    post = _change(
        summary, body, ("200", _EXPERIMENT_STATE), **{"404": _EXPERIMENT_404, "409": _EXPERIMENT_409}
    )
    return {"parameters": [_EXPERIMENT], "post": post}


_SCHEMAS: Final[Json] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, for the operator."},
            "field": {"type": "string", "description": "The body field that was refused."},
            "errors": {"type": "array", "items": {"type": "string"}, "description": "Config errors."},
        },
    },
    "Status": {"type": "object", "required": ["status"], "properties": {"status": {"type": "string"}}},
    "Endpoint": {
        "type": "object",
        "required": ["address", "weight", "healthy", "available", "drained", "inflight"],
        "properties": {
            "address": {"type": "string"},
            "hostname": {"type": "string", "nullable": True},
            "weight": {"type": "integer"},
            "healthy": {"type": "boolean"},
            "available": {"type": "boolean"},
            "ejected": {"type": "boolean"},
            "ejected_seconds_left": {"type": "number"},
            "ejection_count": {"type": "integer"},
            "drained": {"type": "boolean"},
            "inflight": {"type": "integer"},
            "ewma_ms": {"type": "number"},
            "queue_depth": {"type": "integer", "nullable": True},
            "total_requests": {"type": "integer"},
            "total_failures": {"type": "integer"},
        },
    },
    "Cluster": {
        "type": "object",
        "required": ["protocol", "endpoints"],
        "properties": {
            "protocol": {"type": "string"},
            "endpoints": {"type": "array", "items": _ref("Endpoint")},
            "circuit_breaker_rejections": {"type": "integer"},
            "retries": {"type": "integer"},
        },
    },
    "EndpointChange": {
        "type": "object",
        "required": ["cluster", "endpoint"],
        "properties": {
            "cluster": {"type": "string"},
            "endpoint": {"type": "string"},
            "registered": {"type": "boolean"},
            "grpc_port": {"type": "integer"},
            "drained": {"type": "boolean"},
        },
    },
    "ExperimentState": {
        "type": "object",
        "required": ["state", "shares"],
        "properties": {
            "state": {"type": "object", "description": "The split's stored state."},
            "shares": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
}

OPENAPI: Final[Json] = {
    "openapi": "3.0.3",
    "info": {
        "title": "turnout admin API",
        "version": "1",
        "description": "Health, metrics, the effective config, endpoint control, reloads, cache and "
        "experiment operations. Calls that change state need Content-Type: application/json; without "
        "an admin token they are accepted only from a loopback Host and without a foreign Origin.",
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {"adminToken": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{}, {"adminToken": []}],
    "paths": {
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers.",
                "security": [{}],
                "responses": {"200": _answer("Alive.", _ref("Status"))},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: ready to take traffic.",
                "security": [{}],
                "responses": {
                    "200": _answer("Ready.", _ref("Status")),
                    "503": _answer("Starting or draining.", _ref("Status")),
                },
            }
        },
        "/metrics": _read(
            "Prometheus metrics: OpenMetrics (with trace exemplars) to a scraper whose Accept asks for it.",
            {
                "description": "Text exposition format, or OpenMetrics.",
                "content": {
                    "text/plain": {"schema": {"type": "string"}},
                    "application/openmetrics-text": {"schema": {"type": "string"}},
                },
            },
        ),
        "/admin/openapi.json": _read("This document.", _answer("An OpenAPI 3.0 document.")),
        "/admin/config": _read("The effective config, with secrets replaced by ***.", _answer("The config.")),
        "/admin/clusters": _read(
            "Each cluster's endpoints and their state.",
            _answer("Clusters by name.", {"type": "object", "additionalProperties": _ref("Cluster")}),
        ),
        "/admin/reload": {
            "post": _change(
                "Load the config file again and switch to it.",
                _NO_DATA,
                ("200", _answer("Reloaded.", {"type": "object", "required": ["reloaded"]})),
            )
        },
        "/admin/cache/invalidate": {
            "post": {
                **_change(
                    "Drop cached answers of one model, or of all, on every caching route.",
                    _NO_DATA,
                    (
                        "200",
                        _answer(
                            "How many answers were dropped.",
                            {
                                "type": "object",
                                "required": ["model", "removed"],
                                "properties": {
                                    "model": {"type": "string", "nullable": True},
                                    "removed": {"type": "integer"},
                                },
                            },
                        ),
                    ),
                    **{"404": _error("No route has a cache filter.")},
                ),
                "parameters": [
                    {
                        "name": "model",
                        "in": "query",
                        "required": False,
                        "description": "Only this model's answers; all when absent.",
                        "schema": {"type": "string"},
                    }
                ],
            }
        },
        "/admin/clusters/{cluster}/endpoints": {
            "parameters": [_path("cluster", "A cluster's name.")],
            "post": _change(
                "Add an endpoint to a cluster (kept across reloads that keep the cluster).",
                _body(
                    {
                        "type": "object",
                        "required": ["address"],
                        "properties": {
                            "address": {
                                "type": "string",
                                "description": "host:port; an IP literal ([::1]:80 for IPv6) or a DNS "
                                "name. Link-local and cloud metadata addresses are refused unless "
                                "admin.allow_link_local_endpoints is set.",
                            },
                            "weight": {"type": "integer", "minimum": 1, "maximum": MAX_ENDPOINT_WEIGHT},
                            "grpc_port": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": MAX_PORT,
                                "description": "The endpoint's gRPC port on the same host, as a config "
                                "entry's grpc_port: gRPC calls and gRPC health checks go there. Not the "
                                "address's own port.",
                            },
                        },
                    },
                    "The endpoint to add.",
                ),
                ("201", _answer("Added.", _ref("EndpointChange"))),
                **{"404": _error("No cluster has this name.")},
            ),
        },
        "/admin/clusters/{cluster}/endpoints/{address}/{action}": {
            "parameters": [
                _path("cluster", "A cluster's name."),
                _path("address", "The endpoint's host:port."),
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "description": "drain: no new requests (those in flight finish); undrain: back in.",
                    "schema": {"type": "string", "enum": ["drain", "undrain"]},
                },
            ],
            "post": {
                "summary": "Drain or undrain an endpoint.",
                "requestBody": _NO_DATA,
                "responses": {
                    "200": _answer("Done.", _ref("EndpointChange")),
                    "404": _error("No such cluster, or it has no such endpoint."),
                    **_MUTATION_REFUSALS,
                },
            },
        },
        "/admin/clusters/{cluster}/endpoints/{address}": {
            "parameters": [
                _path("cluster", "A cluster's name."),
                _path("address", "The endpoint's host:port."),
            ],
            "delete": {
                "summary": "Remove an endpoint; requests in flight to it finish.",
                "requestBody": _NO_DATA,
                "responses": {
                    "200": _answer("Removed.", _ref("EndpointChange")),
                    "404": _error("No such cluster, or it has no such endpoint."),
                    **_MUTATION_REFUSALS,
                },
            },
        },
        "/admin/monitoring/{model}": {
            "parameters": [_path("model", "The model's name, as routes see it.")],
            **_read(
                "A model's quality: drift of each input feature against the reference, and its outputs.",
                _answer(
                    "The report: the model's series summed, then each version and arm on its own.",
                    {
                        "type": "object",
                        "required": ["model", "features", "outputs", "series"],
                        "properties": {
                            "model": {"type": "string"},
                            "rows": {"type": "integer"},
                            "errors": {"type": "array", "items": {"type": "string"}},
                            "features": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["index", "psi", "ks", "state"],
                                    "properties": {
                                        "name": {"type": "string"},
                                        "index": {"type": "integer"},
                                        "psi": {"type": "number", "nullable": True},
                                        "ks": {"type": "number", "nullable": True},
                                        "js": {"type": "number", "nullable": True},
                                        "state": {"type": "string", "enum": ["ok", "warn", "alert"]},
                                        "samples": {"type": "integer"},
                                    },
                                },
                            },
                            "outputs": {"type": "object"},
                            "series": {"type": "array", "items": {"type": "object"}},
                        },
                    },
                ),
                **{"404": _error("No route monitors this model.")},
            ),
        },
        "/admin/monitoring/{model}/rows": {
            "parameters": [
                _path("model", "The model's name, as routes see it."),
                {
                    "name": "from",
                    "in": "query",
                    "required": True,
                    "description": "How far back: a duration such as 2h or 30m.",
                    "schema": {"type": "string"},
                },
            ],
            **_read(
                "A sample of the model's input rows over a recent window, for a reference file.",
                _answer(
                    "The rows, pooled from five-minute buckets in proportion to their traffic.",
                    {
                        "type": "object",
                        "required": ["model", "from_s", "seen", "names", "rows"],
                        "properties": {
                            "model": {"type": "string"},
                            "from_s": {"type": "number"},
                            "seen": {"type": "integer"},
                            "names": {"type": "array", "items": {"type": "string"}, "nullable": True},
                            "rows": {"type": "array", "items": _ROW},
                        },
                    },
                ),
                **{
                    "400": _error("from is not a positive duration."),
                    "404": _error("No route monitors this model."),
                    "409": _error("Routes monitoring the model saw rows of different widths."),
                },
            ),
        },
        "/admin/monitoring/{model}/baseline": {
            "parameters": [_path("model", "The model's name, as routes see it.")],
            "post": _change(
                "Make the model's input rows of a recent window its reference now (until a reload).",
                _body(
                    {
                        "type": "object",
                        "required": ["from"],
                        "properties": {"from": {"type": "string", "description": "A duration: 2h, 30m."}},
                    },
                    "How far back the reference reaches.",
                ),
                (
                    "200",
                    _answer(
                        "The references made, one per monitor filter of the model.",
                        {
                            "type": "object",
                            "required": ["model", "from_s", "references"],
                            "properties": {
                                "model": {"type": "string"},
                                "from_s": {"type": "number"},
                                "references": {"type": "array", "items": {"type": "object"}},
                            },
                        },
                    ),
                ),
                **{
                    "404": _error("No route monitors this model."),
                    "409": _error("Too few rows were kept from that window to make a reference."),
                },
            ),
        },
        "/admin/experiments": _read(
            "Every experiment, its kind, state and arm shares.",
            _answer("Experiments by name.", {"type": "object", "additionalProperties": {"type": "object"}}),
            **{"404": _error("No experiment is configured.")},
        ),
        "/admin/experiments/{name}": {
            "parameters": [_EXPERIMENT],
            **_read(
                "An experiment's status: arms, counts, metrics, tests and decision.",
                _answer("The status.", {"type": "object", "required": ["kind", "state", "shares"]}),
                **{"404": _EXPERIMENT_404},
            ),
        },
        "/admin/experiments/{name}/report": {
            "parameters": [
                _EXPERIMENT,
                {
                    "name": "format",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["json", "md", "html"], "default": "json"},
                },
            ],
            **_read(
                "The analyst's report of an A/B test or canary.",
                {
                    "description": "The report in the asked format.",
                    "content": {
                        _JSON: {"schema": {"type": "object"}},
                        "text/markdown": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                **{"400": _error("Unknown format, or not an A/B test or canary."), "404": _EXPERIMENT_404},
            ),
        },
        "/admin/experiments/{name}/pause": _experiment_action(
            "Pause: every unit gets the control.", _NO_DATA
        ),
        "/admin/experiments/{name}/resume": _experiment_action("Resume a paused experiment.", _NO_DATA),
        "/admin/experiments/{name}/rollback": _experiment_action(
            "End an A/B test or canary with the control serving everyone.", _NO_DATA
        ),
        "/admin/experiments/{name}/promote": _experiment_action(
            "End an A/B test with an arm serving everyone (a canary promotes its candidate).",
            _body(
                {"type": "object", "properties": {"arm": {"type": "string", "minLength": 1}}},
                '{"arm": "treatment"} for an A/B test; nothing for a canary.',
            ),
        ),
        "/admin/experiments/{name}/weights": _experiment_action(
            "New arm weights for an A/B test (a new phase starts).",
            _body(
                {
                    "type": "object",
                    "required": ["weights"],
                    "properties": {
                        "weights": {
                            "type": "object",
                            "minProperties": 1,
                            "additionalProperties": {
                                "type": "number",
                                "minimum": 0,
                                "maximum": MAX_ARM_WEIGHT,
                            },
                        }
                    },
                },
                'Every arm\'s relative weight: {"weights": {"control": 90, "treatment": 10}}.',
            ),
        ),
        "/admin/experiments/{name}/coverage": _experiment_action(
            "The percent of units in an A/B test or canary, or a shadow's mirrored percent.",
            _body(
                {
                    "type": "object",
                    "required": ["percent"],
                    "properties": {
                        "percent": {"type": "number", "minimum": 0, "maximum": 100},
                        "mirror": {"type": "string", "description": "The mirror, for a shadow."},
                    },
                },
                '{"percent": 25}',
            ),
        ),
        "/admin/experiments/{name}/switch": _experiment_action(
            "Blue-green: switch to the standby once its smoke check passes.", _NO_DATA
        ),
    },
}

_BODY: Final = orjson.dumps(OPENAPI)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_BODY, content_type=_JSON)
