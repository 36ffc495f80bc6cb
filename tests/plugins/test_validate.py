"""The validation filter: body rules, and OIP v2 requests checked against metadata served on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.validate import FACTORY, OipValidateFilter, ValidateConfig

METADATA: dict[str, dict[str, Any]] = {
    "fraud": {
        "name": "fraud",
        "versions": ["1"],
        "platform": "onnxruntime",
        "inputs": [
            {"name": "features", "datatype": "FP32", "shape": [-1, 4]},
            {"name": "country", "datatype": "BYTES", "shape": [-1, 1]},
        ],
        "outputs": [{"name": "score", "datatype": "FP32", "shape": [-1, 1]}],
    },
    "broken": {"name": "broken", "inputs": "not a list"},
}


class MetadataServer:
    """A real HTTP server on 127.0.0.1 answering model metadata, counting requests per path."""

    def __init__(self) -> None:
        self.hits: dict[str, int] = {}
        self.delay = 0.0
        self.status: int | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _metadata(self, request: web.Request) -> web.Response:
        self.hits[request.path] = self.hits.get(request.path, 0) + 1
        await asyncio.sleep(self.delay)
        if self.status is not None:
            return web.Response(status=self.status, text="down")
        model = METADATA.get(request.match_info["model"])
        if model is None:
            return web.json_response({"error": "unknown model"}, status=404)
        return web.json_response(model)

    async def _server(self, request: web.Request) -> web.Response:
        # Server metadata: a 404 for a model then means the model is unknown, not that no metadata exists.
        return web.json_response({"name": "metadata-server", "version": "1", "extensions": []})

    async def __aenter__(self) -> MetadataServer:
        app = web.Application()
        app.router.add_get("/v2", self._server)
        app.router.add_get("/v2/models/{model}", self._metadata)
        app.router.add_get("/v2/models/{model}/versions/{version}", self._metadata)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def metadata_server() -> AsyncIterator[MetadataServer]:
    async with MetadataServer() as server:
        yield server


def build(registry: CollectorRegistry | None = None, **options: Any) -> Filter:
    return FACTORY(ValidateConfig.model_validate(options), BuildContext("infer", "up", registry))


async def started(**options: Any) -> OipValidateFilter:
    built = build(oip_v2=True, **options)
    assert isinstance(built, OipValidateFilter)
    await built.start()
    return built


def request(
    body: bytes | None = None,
    *,
    path: str = "/v2/models/fraud/infer",
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> RequestContext:
    sent = {"content-type": "application/json", **(headers or {})}
    if body is not None:
        sent.setdefault("content-length", str(len(body)))
    ctx = RequestContext(method, path, "", sent, "10.0.0.1", 0.0)
    ctx.body = body
    return ctx


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def infer(*tensors: dict[str, Any], outputs: list[str] | None = None) -> bytes:
    document: dict[str, Any] = {"inputs": list(tensors)}
    if outputs is not None:
        document["outputs"] = [{"name": name} for name in outputs]
    return orjson.dumps(document)


FEATURES = tensor("features", "FP32", [2, 4], [0.5] * 8)
COUNTRY = tensor("country", "BYTES", [2, 1], ["fr", "de"])


async def decide(check: Filter, ctx: RequestContext) -> Response | None:
    decision = check.on_request(ctx)
    if asyncio.iscoroutine(decision):
        decision = await decision
    assert decision is None or isinstance(decision, Response)
    return decision


def error_of(answer: Response | None, status: int) -> str:
    assert answer is not None, "the request was let through"
    assert answer.status == status, answer.body
    message: str = orjson.loads(answer.body or b"{}")["error"]
    return message


# --- body rules ------------------------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_refused_from_its_content_length() -> None:
    check = build(max_body_bytes="1KiB")
    assert not check.needs_request_body
    announced = request(headers={"content-length": "5000"})
    assert error_of(await decide(check, announced), 413) == (
        "the request body is 5000 bytes; this route accepts at most 1024"
    )
    assert await decide(check, request(b"x" * 1024, headers={"content-type": "text/plain"})) is None


async def test_a_read_body_over_the_limit_is_refused_whatever_its_headers_say() -> None:
    check = await started(max_body_bytes=100)
    ctx = request(infer(FEATURES, COUNTRY), headers={"content-length": "10"})
    assert "this route accepts at most 100" in error_of(await decide(check, ctx), 413)


async def test_only_the_listed_content_types_are_accepted() -> None:
    check = build(content_types=["application/json", "Application/Octet-Stream"])
    assert (
        await decide(check, request(b"{}", headers={"content-type": "application/json; charset=utf-8"}))
        is None
    )
    assert await decide(check, request(b"{}", headers={"content-type": "application/octet-stream"})) is None
    refused = error_of(await decide(check, request(b"a=1", headers={"content-type": "text/plain"})), 415)
    assert refused == (
        "content type 'text/plain' is not accepted here; "
        "send one of: application/json, application/octet-stream"
    )
    untyped = RequestContext("POST", "/x", "", {"content-length": "2"}, "10.0.0.1", 0.0)
    assert "without a content type" in error_of(await decide(check, untyped), 415)
    bodiless = RequestContext("GET", "/x", "", {}, "10.0.0.1", 0.0)
    assert await decide(check, bodiless) is None


# --- OIP v2: the request on its own ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[]", "request body must be a JSON object, got list"),
        (b'{"inputs": []}', "request: 'inputs' must be a non-empty list of tensors"),
        (
            infer(tensor("features", "FP32", [2, 4], [0.5] * 7)),
            "input 'features': shape [2, 4] needs 8 values, got 7",
        ),
        (infer(tensor("features", "FP99", [1], [1.0])), "input 'features': unsupported datatype 'FP99'"),
        (
            infer(tensor("features", "INT32", [2], [1, 2.5])),
            "input 'features': datatype INT32 needs integers",
        ),
        (
            infer(tensor("features", "FP32", [-1], [1.0])),
            "input 'features': 'shape' must be a list of non-negative",
        ),
    ],
)
async def test_malformed_requests_are_refused_without_metadata(body: bytes, message: str) -> None:
    check = await started()
    assert message in error_of(await decide(check, request(body)), 400)


async def test_other_paths_and_methods_are_not_inference_requests() -> None:
    check = await started()
    assert await decide(check, request(b"anything", path="/v2/models/fraud/ready")) is None
    assert await decide(check, request(None, method="GET", path="/v2/models/fraud")) is None


# --- OIP v2: against the model's metadata ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            infer(FEATURES, COUNTRY, tensor("age", "INT32", [2, 1], [30, 40])),
            "input 'age' is not an input of model 'fraud'; its inputs are 'country', 'features'",
        ),
        (infer(FEATURES), "input 'country' of model 'fraud' is missing from the request"),
        (
            infer(tensor("features", "FP64", [2, 4], [0.5] * 8), COUNTRY),
            "input 'features': datatype FP64 does not match model 'fraud', which expects FP32",
        ),
        (
            infer(tensor("features", "FP32", [8], [0.5] * 8), COUNTRY),
            "input 'features': shape [8] has 1 dimensions; model 'fraud' expects 2 ([-1, 4])",
        ),
        (
            infer(tensor("features", "FP32", [2, 3], [0.5] * 6), COUNTRY),
            "input 'features': dimension 1 of shape [2, 3] is 3; model 'fraud' expects 4 ([-1, 4])",
        ),
        (
            infer(FEATURES, COUNTRY, outputs=["score", "explanation"]),
            "requested output 'explanation' is not an output of model 'fraud'; its outputs are 'score'",
        ),
    ],
)
async def test_requests_that_do_not_fit_the_model_get_a_precise_400(
    metadata_server: MetadataServer, body: bytes, message: str
) -> None:
    # strict: an output the metadata does not list is refused only then (see the undeclared tests).
    check = await started(metadata_from=metadata_server.url, strict=True)
    try:
        assert error_of(await decide(check, request(body)), 400) == message
    finally:
        await check.stop()


async def test_valid_requests_pass_in_json_and_binary_form(metadata_server: MetadataServer) -> None:
    check = await started(metadata_from=metadata_server.url)
    try:
        assert await decide(check, request(infer(FEATURES, COUNTRY, outputs=["score"]))) is None
        wide_batch = tensor("features", "FP32", [5, 4], [0.0] * 20)
        assert (
            await decide(check, request(infer(wide_batch, tensor("country", "BYTES", [5, 1], ["x"] * 5))))
            is None
        )
        head = orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP32",
                        "shape": [1, 4],
                        "parameters": {"binary_data_size": 16},
                    },
                    tensor("country", "BYTES", [1, 1], ["fr"]),
                ]
            }
        )
        binary = request(
            head + bytes(16),
            headers={
                "content-type": "application/octet-stream",
                "inference-header-content-length": str(len(head)),
            },
        )
        assert await decide(check, binary) is None
    finally:
        await check.stop()


async def test_without_the_require_all_option_inputs_may_be_omitted(metadata_server: MetadataServer) -> None:
    check = await started(metadata_from=metadata_server.url, require_all_inputs=False)
    try:
        assert await decide(check, request(infer(FEATURES))) is None
    finally:
        await check.stop()


async def test_an_unknown_model_is_404_and_versions_are_asked_for(metadata_server: MetadataServer) -> None:
    check = await started(metadata_from=metadata_server.url)
    try:
        assert error_of(
            await decide(check, request(infer(FEATURES), path="/v2/models/ghost/infer")), 404
        ) == ("model 'ghost' is not served here")
        versioned = request(infer(FEATURES, COUNTRY), path="/v2/models/fraud/versions/1/infer")
        assert await decide(check, versioned) is None
        assert metadata_server.hits == {"/v2/models/ghost": 1, "/v2/models/fraud/versions/1": 1}
    finally:
        await check.stop()


async def test_metadata_is_fetched_once_even_by_concurrent_first_requests(
    metadata_server: MetadataServer,
) -> None:
    metadata_server.delay = 0.05
    check = await started(metadata_from=metadata_server.url)
    try:
        answers = await asyncio.gather(*(decide(check, request(infer(FEATURES, COUNTRY))) for _ in range(30)))
        assert answers == [None] * 30
        assert await decide(check, request(infer(FEATURES))) is not None
        assert metadata_server.hits == {"/v2/models/fraud": 1}
    finally:
        await check.stop()
    reloaded = await started(metadata_from=metadata_server.url)  # a reload builds new filters
    try:
        await decide(reloaded, request(infer(FEATURES, COUNTRY)))
        assert metadata_server.hits == {"/v2/models/fraud": 2}
    finally:
        await reloaded.stop()


async def test_metadata_is_fetched_again_after_its_ttl(metadata_server: MetadataServer) -> None:
    check = await started(metadata_from=metadata_server.url, metadata_ttl="30ms")
    try:
        await decide(check, request(infer(FEATURES, COUNTRY)))
        await asyncio.sleep(0.05)
        await decide(check, request(infer(FEATURES, COUNTRY)))
        assert metadata_server.hits == {"/v2/models/fraud": 2}
    finally:
        await check.stop()


@pytest.mark.parametrize("failure", ["status", "timeout", "malformed"])
async def test_without_usable_metadata_requests_get_the_structural_checks_only(
    metadata_server: MetadataServer, failure: str
) -> None:
    registry = CollectorRegistry()
    path = "/v2/models/fraud/infer"
    if failure == "status":
        metadata_server.status = 503
    elif failure == "timeout":
        metadata_server.delay = 0.5
    else:
        path = "/v2/models/broken/infer"
    check = await started(registry=registry, metadata_from=metadata_server.url, metadata_timeout="50ms")
    try:
        assert await decide(check, request(infer(FEATURES), path=path)) is None  # would be 400 with metadata
        malformed = request(infer(tensor("features", "FP32", [2], [1.0])), path=path)
        assert "needs 2 values, got 1" in error_of(await decide(check, malformed), 400)
        unchecked = {"filter": "validate", "route": "infer", "decision": "unchecked"}
        assert registry.get_sample_value("turnout_filter_decisions_total", unchecked) == 1
        assert sum(metadata_server.hits.values()) == 1  # the failure is remembered briefly
    finally:
        await check.stop()


async def test_an_injected_fetcher_replaces_the_http_one() -> None:
    asked: list[tuple[str, str | None]] = []

    async def from_cluster(model: str, version: str | None) -> Mapping[str, Any] | None:
        asked.append((model, version))
        return METADATA.get(model)

    check = await started()
    assert await decide(check, request(infer(FEATURES))) is None  # no metadata source yet
    check.set_metadata_fetcher(from_cluster)
    assert "'country' of model 'fraud' is missing" in error_of(
        await decide(check, request(infer(FEATURES))), 400
    )
    ctx = request(infer(FEATURES, COUNTRY), path="/v2/models/fraud/versions/3/infer")
    assert await decide(check, ctx) is None
    assert asked == [("fraud", None), ("fraud", "3")]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "validate checks nothing"),
        ({"max_body_bytes": "1MiB", "metadata_from": "http://127.0.0.1:1"}, "only with oip_v2"),
        ({"oip_v2": True, "metadata_from": "127.0.0.1:8001"}, "http:// or https:// URL"),
        ({"max_body_bytes": "lots"}, "invalid size"),
    ],
)
def test_config_errors_say_what_is_wrong(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ValidateConfig.model_validate(config)
