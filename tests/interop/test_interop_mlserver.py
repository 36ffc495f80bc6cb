"""turnout in front of a real MLServer 1.7 (scikit-learn runtime): a model that declares no
signature, outputs it serves without declaring, a client that sends no Content-Type, and binary
batches to a server without the binary tensor extension."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from typing import Any

import aiohttp
import orjson
import pytest

from tests.conftest import gateway_config
from tests.interop.model_servers import ModelServer

ROWS = [[0.0, 0.0], [1.0, 1.0]]


def infer(rows: list[list[float]], outputs: list[str] | None = None, **extra: Any) -> bytes:
    tensor = {
        "name": "input-0",
        "datatype": "FP64",
        "shape": [len(rows), 2],
        "data": [x for row in rows for x in row],
    }
    document: dict[str, Any] = {"inputs": [tensor], **extra}
    if outputs is not None:
        document["outputs"] = [{"name": name} for name in outputs]
    return orjson.dumps(document)


def validated(server: ModelServer, **options: Any) -> dict[str, Any]:
    route = {
        "name": "models",
        "match": {"prefix": "/v2/"},
        "backend": {"cluster": "up"},
        "filters": [{"validate": {"oip_v2": True, **options}}],
    }
    return gateway_config([server.address], cluster={"protocol": "oip_v2"}, routes=[route])


async def test_a_model_without_a_declared_signature_is_served_as_directly(
    make_gateway: Any, mlserver: ModelServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = infer(ROWS)
    expected = mlserver.infer_directly(body)["outputs"]
    async with make_gateway(validated(mlserver)) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/v2/models/bc/infer"
        with caplog.at_level(logging.WARNING, logger="turnout.validate"):
            for _ in range(3):
                async with session.post(
                    url, data=body, headers={"content-type": "application/json"}
                ) as answer:
                    assert answer.status == 200, await answer.text()
                    assert (await answer.json())["outputs"] == expected
            # predict_proba is served though the metadata lists no outputs.
            proba = infer(ROWS, outputs=["predict_proba"])
            async with session.post(url, data=proba, headers={"content-type": "application/json"}) as answer:
                assert answer.status == 200
                assert (await answer.json())["outputs"][0]["name"] == "predict_proba"
        notes = [
            record.getMessage() for record in caplog.records if "does not declare" in record.getMessage()
        ]
        assert len(notes) == 1, "logged once per model"
        assert "'bc'" in notes[0]
        # A structurally broken request is still refused before MLServer sees it.
        broken = orjson.dumps(
            {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 2], "data": [1]}]}
        )
        async with session.post(url, data=broken, headers={"content-type": "application/json"}) as answer:
            assert answer.status == 400


async def test_strict_refuses_what_the_metadata_does_not_declare(
    make_gateway: Any, mlserver: ModelServer
) -> None:
    async with make_gateway(validated(mlserver, strict=True)) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/v2/models/bc/infer"
        async with session.post(url, data=infer(ROWS)) as answer:
            assert answer.status == 400
            assert "declares no inputs" in (await answer.json())["error"]


async def test_a_client_that_sends_no_content_type_is_accepted(
    make_gateway: Any, mlserver: ModelServer
) -> None:
    """tritonclient's synchronous HTTP client sends a JSON body with no Content-Type."""
    config = validated(mlserver, content_types=["application/json", "application/octet-stream"])
    async with make_gateway(config) as gateway:
        url = f"http://127.0.0.1:{gateway.data_port}/v2/models/bc/infer"

        def post(body: bytes) -> int:
            request = urllib.request.Request(url, body, method="POST")
            request.remove_header("Content-type")
            request.add_unredirected_header("Content-Type", "")  # urllib would add a form type
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as error:
                return int(error.code)

        assert await asyncio.to_thread(post, infer(ROWS)) == 200
        assert await asyncio.to_thread(post, b"a=1&b=2") == 415, (
            "a body that is not JSON still needs its type"
        )


async def test_binary_batches_fall_back_to_json_where_the_server_lacks_the_extension(
    make_gateway: Any, mlserver: ModelServer
) -> None:
    route = {
        "name": "batched",
        "match": {"prefix": "/"},
        "backend": {"cluster": "up"},
        "filters": [
            {"batching": {"max_batch_size": 32, "max_queue_delay": 0.05, "upstream_binary_tensors": True}}
        ],
    }
    config = gateway_config([mlserver.address], cluster={"protocol": "oip_v2"}, routes=[route])
    bodies = [infer([[float(i % 2), float(i % 2)]], id=f"r{i}") for i in range(12)]
    expected = [mlserver.infer_directly(body)["outputs"][0]["data"] for body in bodies]
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/v2/models/bc/infer"

        async def post(body: bytes) -> tuple[int, Any]:
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as answer:
                return answer.status, await answer.json()

        answers = await asyncio.gather(*(post(body) for body in bodies))
        members = gateway.runtime.routes[0].filters.filters[0].metrics.batch_members
        merged = [s.value for m in members.collect() for s in m.samples if s.name.endswith("_sum")]
        batches = [s.value for m in members.collect() for s in m.samples if s.name.endswith("_count")]
        assert sum(merged) > sum(batches), "some requests were merged, so a batch was encoded here"
    for i, (status, document) in enumerate(answers):
        assert status == 200, document
        assert document["outputs"][0]["data"] == expected[i]
        assert document["id"] == f"r{i}"
