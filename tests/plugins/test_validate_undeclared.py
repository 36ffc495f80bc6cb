"""validate against what real servers publish: no declared signature, outputs served but not
declared, no metadata at all (TorchServe), signatures written in the config, and clients that send
a JSON body without a Content-Type."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Filter, Response
from plugins.validate import FACTORY, OipValidateFilter, ValidateConfig

UNDECLARED = {"name": "bc", "versions": None, "platform": "", "inputs": [], "outputs": []}
DECLARED = {
    "name": "bcmeta",
    "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 2]}],
    "outputs": [{"name": "predict", "datatype": "INT64", "shape": [-1]}],
}


@pytest.fixture
async def metadata_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A real server answering metadata; with `serves_v2` False it answers 404 everywhere but
    publishes nothing, as TorchServe's v2 envelope does."""
    serves_v2 = getattr(request, "param", True)
    models = {"bc": UNDECLARED, "bcmeta": DECLARED}

    async def model(http: web.Request) -> web.Response:
        found = models.get(http.match_info["model"]) if serves_v2 else None
        return web.json_response(found) if found else web.json_response({"error": "no"}, status=404)

    async def server(http: web.Request) -> web.Response:
        if not serves_v2:
            return web.json_response({"code": 404}, status=404)
        return web.json_response({"name": "s", "extensions": []})

    app = web.Application()
    app.router.add_get("/v2", server)
    app.router.add_get("/v2/models/{model}", model)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def started(**options: Any) -> OipValidateFilter:
    built = FACTORY(
        ValidateConfig.model_validate({"oip_v2": True, **options}),
        BuildContext("r", "up", CollectorRegistry()),
    )
    assert isinstance(built, OipValidateFilter)
    await built.start()
    return built


def ctx(body: bytes, model: str = "bc", headers: dict[str, str] | None = None) -> RequestContext:
    sent = {"content-type": "application/json", **(headers or {})}
    context = RequestContext("POST", f"/v2/models/{model}/infer", "", sent, "10.0.0.1", 0.0)
    context.body = body
    return context


def infer(name: str = "input-0", outputs: list[str] | None = None, datatype: str = "FP64") -> bytes:
    document: dict[str, Any] = {
        "inputs": [{"name": name, "datatype": datatype, "shape": [1, 2], "data": [0, 1]}]
    }
    if outputs:
        document["outputs"] = [{"name": output} for output in outputs]
    return orjson.dumps(document)


async def decide(check: Filter, context: RequestContext) -> Response | None:
    decision = check.on_request(context)
    if asyncio.iscoroutine(decision):
        decision = await decision
    assert decision is None or isinstance(decision, Response)
    return decision


def refusal(answer: Response | None, status: int = 400) -> str:
    assert answer is not None and answer.status == status, answer
    message: str = orjson.loads(answer.body or b"{}")["error"]
    return message


async def test_what_the_metadata_does_not_declare_passes_and_is_logged_once(
    metadata_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    check = await started(metadata_from=metadata_url)
    try:
        with caplog.at_level(logging.WARNING, logger="turnout.validate"):
            for _ in range(3):
                assert await decide(check, ctx(infer("anything"))) is None
            assert await decide(check, ctx(infer(outputs=["predict_proba"]), model="bcmeta")) is None
        notes = [r.getMessage() for r in caplog.records if "does not declare" in r.getMessage()]
        assert len(notes) == 2 and "'bc'" in notes[0] and "predict_proba" in notes[1]
        # What is declared is still checked.
        assert "not an input of model 'bcmeta'" in refusal(
            await decide(check, ctx(infer("age"), model="bcmeta"))
        )
        wrong_type = ctx(infer(datatype="FP32"), model="bcmeta")
        assert "which expects FP64" in refusal(await decide(check, wrong_type))
    finally:
        await check.stop()


async def test_strict_refuses_what_is_not_declared(metadata_url: str) -> None:
    check = await started(metadata_from=metadata_url, strict=True)
    try:
        assert "declares no inputs" in refusal(await decide(check, ctx(infer())))
        undeclared_output = ctx(infer(outputs=["predict_proba"]), model="bcmeta")
        assert "'predict_proba' is not an output" in refusal(await decide(check, undeclared_output))
        assert await decide(check, ctx(infer(outputs=["predict"]), model="bcmeta")) is None
    finally:
        await check.stop()


@pytest.mark.parametrize("metadata_url", [False], indirect=True)
async def test_a_server_that_publishes_no_metadata_gets_the_structural_checks(metadata_url: str) -> None:
    check = await started(metadata_from=metadata_url)
    try:
        assert await decide(check, ctx(infer(), model="doubler")) is None, "404 here is not an unknown model"
        short = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1]}]})
        assert "needs 2 values" in refusal(await decide(check, ctx(short, model="doubler")))
    finally:
        await check.stop()


async def test_a_signature_in_the_config_is_used_without_fetching() -> None:
    signatures = {
        "doubler": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}], "outputs": ["predict"]}
    }
    check = await started(signatures=signatures)
    try:
        assert await decide(check, ctx(infer("x"), model="doubler")) is None
        assert "not an input of model 'doubler'" in refusal(
            await decide(check, ctx(infer("y"), model="doubler"))
        )
        assert await decide(check, ctx(infer("y"), model="other")) is None, "other models: structure only"
    finally:
        await check.stop()


async def test_a_json_body_without_a_content_type_is_accepted_as_json() -> None:
    check = await started(content_types=["application/json"])
    try:
        untyped = ctx(b"  " + infer(), headers={"content-type": ""})
        del untyped.headers["content-type"]
        assert await decide(check, untyped) is None
        form = ctx(b"a=1", headers={})
        del form.headers["content-type"]
        assert "without a content type" in refusal(await decide(check, form), 415)
    finally:
        await check.stop()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"content_types": ["application/json"], "strict": True}, "strict is used only with oip_v2"),
        ({"max_body_bytes": 10, "signatures": {"m": {}}}, "signatures is used only with oip_v2"),
        (
            {
                "oip_v2": True,
                "signatures": {"m": {"inputs": [{"name": "x", "datatype": "F32", "shape": [1]}]}},
            },
            "unknown datatype",
        ),
        (
            {
                "oip_v2": True,
                "signatures": {"m": {"inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}},
            },
            "-1 for any size",
        ),
        ({"oip_v2": True, "signatures": {"m": {"input": []}}}, "Extra inputs"),
    ],
)
def test_config_errors_say_what_is_wrong(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ValidateConfig.model_validate(options)
