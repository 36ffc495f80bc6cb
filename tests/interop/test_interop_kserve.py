"""turnout in front of KServe's real Python model server: batching under load against answers that
write `"parameters": null`, each member's id kept, a model's exception relayed and never charged,
and validation of a model that declares no signature."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from tests.conftest import gateway_config
from tests.interop.model_servers import ModelServer

# The load: merged batches are where `"parameters": null` used to break every member.
CONCURRENT = 32


def infer(rows: list[list[float]], **extra: Any) -> bytes:
    data = [value for row in rows for value in row]
    tensor = {
        "name": "input-0",
        "datatype": "FP64",
        "shape": [len(rows), 2],
        "data": data,
        "parameters": None,
    }
    return orjson.dumps({"inputs": [tensor], **extra})


def batched(server: ModelServer, **cluster: Any) -> dict[str, Any]:
    route = {
        "name": "batched",
        "match": {"prefix": "/"},
        "backend": {"cluster": "up"},
        "filters": [{"batching": {"max_batch_size": 64, "max_queue_delay": 0.05}}],
    }
    return gateway_config([server.address], cluster={"protocol": "oip_v2", **cluster}, routes=[route])


async def test_concurrent_requests_are_merged_and_answered_as_directly(
    make_gateway: Any, kserve: ModelServer
) -> None:
    rows = [[[float(i % 2), float(i % 2)]] * (1 + i % 3) for i in range(CONCURRENT)]
    bodies = [
        infer(member, id=f"req-{i}", parameters=None) if i % 2 else infer(member, parameters=None)
        for i, member in enumerate(rows)
    ]
    expected = [kserve.infer_directly(body)["outputs"][0]["data"] for body in bodies]
    async with make_gateway(batched(kserve)) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/v2/models/bc/infer"

        async def post(body: bytes) -> tuple[int, Any]:
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as answer:
                return answer.status, await answer.json()

        answers = await asyncio.gather(*(post(body) for body in bodies))
        batches = gateway.runtime.routes[0].filters.filters[0].metrics
    for i, (status, document) in enumerate(answers):
        assert status == 200, document
        output = document["outputs"][0]
        assert output["data"] == expected[i]
        assert output["shape"] == [len(rows[i])]
        if i % 2:
            assert document["id"] == f"req-{i}", "a member keeps the id it sent"
        else:
            assert isinstance(document["id"], str) and document["id"], "one without gets the server's"
    sizes = _samples(batches.batch_members, "_sum"), _samples(batches.batch_members, "_count")
    assert sizes[0] > sizes[1], f"some batches had several members (members {sizes[0]}, batches {sizes[1]})"


def _samples(histogram: Any, suffix: str) -> float:
    return sum(
        sample.value
        for metric in histogram.collect()
        for sample in metric.samples
        if sample.name.endswith(suffix)
    )


async def test_a_model_exception_is_relayed_once_and_charges_no_endpoint(
    make_gateway: Any, kserve: ModelServer
) -> None:
    config = gateway_config(
        [kserve.address], cluster={"protocol": "oip_v2", "outlier": {"consecutive_failures": 3}}
    )
    wrong_width = orjson.dumps(
        {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3], "data": [1, 2, 3]}]}
    )
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/v2/models/bc/infer"
        for _ in range(6):
            async with session.post(
                url, data=wrong_width, headers={"content-type": "application/json"}
            ) as answer:
                assert answer.status == 500
                assert "ValueError" in (await answer.json())["error"]
        cluster = gateway.runtime.clusters["up"]
        endpoint = cluster.endpoints.endpoints[0]
        assert endpoint.total_failures == 0 and endpoint.ejected_until == 0, "6 bad inputs, still in service"
        async with session.post(
            url, data=infer([[1.0, 1.0]]), headers={"content-type": "application/json"}
        ) as answer:
            assert answer.status == 200


async def test_validate_passes_a_model_without_a_declared_signature(
    make_gateway: Any, kserve: ModelServer
) -> None:
    route = {
        "name": "models",
        "match": {"prefix": "/v2/"},
        "backend": {"cluster": "up"},
        "filters": [{"validate": {"oip_v2": True}}],
    }
    config = gateway_config([kserve.address], cluster={"protocol": "oip_v2"}, routes=[route])
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gateway.data_port}/v2/models"
        body = infer([[1.0, 1.0]], id="one")
        async with session.post(
            f"{base}/bc/infer", data=body, headers={"content-type": "application/json"}
        ) as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["outputs"][0]["data"] == [1]
        async with session.post(f"{base}/ghost/infer", data=body) as answer:
            assert answer.status == 404, "KServe publishes metadata, so its 404 means an unknown model"
