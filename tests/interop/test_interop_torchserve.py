"""turnout in front of a real TorchServe 0.12 serving the handler of `torchserve_doubler.py`: a
handler's exception is the request's failure, metadata that is not published, rewritten routes,
flat outputs, health checks and headers on batched routes."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from tests.conftest import gateway_config
from tests.interop.model_servers import TorchServe


def _endpoints(gateway: Any) -> list[Any]:
    return list(gateway.runtime.clusters["up"].endpoints.endpoints)


def _infer(rows: list[list[float]], **extra: Any) -> bytes:
    flat = [value for row in rows for value in row]
    tensor = {"name": "x", "datatype": "FP64", "shape": [len(rows), len(rows[0])], "data": flat}
    return orjson.dumps({"inputs": [tensor], **extra})


async def test_bad_inputs_run_once_and_eject_no_replica(
    make_gateway: Any, torchserve_pair: tuple[TorchServe, TorchServe]
) -> None:
    """12 bad inputs across two replicas: each reaches a handler once (no retry of the 503), and
    no replica is ejected; good requests then spread over both."""
    first, second = torchserve_pair
    config = gateway_config(
        [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"],
        cluster={"retry": {"attempts": 2}, "outlier": {"consecutive_failures": 3}},
    )
    before = first.calls() + second.calls()
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/predictions/doubler"
        for _ in range(12):
            async with session.post(url, json=[["not a number"]]) as answer:
                assert answer.status == 503
                assert (await answer.json(content_type=None))["message"] == "Prediction failed", (
                    "relayed as the server said"
                )
        assert first.calls() + second.calls() - before == 12, "a handler exception must not be retried"
        endpoints = _endpoints(gateway)
        assert all(endpoint.ejected_until == 0 for endpoint in endpoints), "no replica may be ejected"
        assert all(endpoint.total_failures == 0 for endpoint in endpoints)
        for _ in range(4):
            async with session.post(url, json=[[1, 2]], headers={"x-request-id": "client-7"}) as answer:
                assert answer.status == 200 and await answer.json(content_type=None) == [[2, 4]]
                # TorchServe's own id is kept for its logs; turnout's (the client's) goes alongside.
                assert answer.headers.getall("x-request-id") != ["client-7"]
                assert len(answer.headers.getall("x-request-id")) == 1
                assert answer.headers["x-turnout-request-id"] == "client-7"


async def test_without_model_errors_a_handler_exception_counts_as_a_server_failure(
    make_gateway: Any, torchserve_pair: tuple[TorchServe, TorchServe]
) -> None:
    """`model_errors: null` restores the old rule: every 5xx is the endpoint's (and is retried)."""
    first, second = torchserve_pair
    config = gateway_config(
        [f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"],
        cluster={"retry": {"attempts": 1}, "outlier": {"consecutive_failures": 100}, "model_errors": None},
    )
    before = first.calls() + second.calls()
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/predictions/doubler"
        async with session.post(url, json=[["bad"]]) as answer:
            assert answer.status == 503
        assert first.calls() + second.calls() - before == 2, "retried once on the other replica"
        assert sum(endpoint.total_failures for endpoint in _endpoints(gateway)) == 2


async def test_validate_without_metadata_checks_structure_and_the_written_signature(
    make_gateway: Any, torchserve_v2: TorchServe
) -> None:
    """TorchServe answers 404 to GET /v2/models/doubler: that is no metadata, not an unknown model.
    On a route rewritten from /ts/ to /v2/, the rewritten path is the one checked."""
    first = torchserve_v2
    routes = [
        {
            "name": "plain",
            "match": {"prefix": "/v2/"},
            "backend": {"cluster": "up"},
            "filters": [{"validate": {"oip_v2": True}}],
        },
        {
            "name": "rewritten",
            "match": {"prefix": "/ts/"},
            "rewrite": {"prefix": "/v2/"},
            "backend": {"cluster": "up"},
            "filters": [
                {
                    "validate": {
                        "oip_v2": True,
                        "signatures": {
                            "doubler": {"inputs": [{"name": "x", "datatype": "FP64", "shape": [-1, 2]}]}
                        },
                    }
                }
            ],
        },
    ]
    config = gateway_config([f"127.0.0.1:{first.port}"], routes=routes)
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gateway.data_port}"
        async with session.post(f"{base}/v2/models/doubler/infer", data=_infer([[1, 2]])) as answer:
            assert answer.status == 200, await answer.text()
            assert (await answer.json(content_type=None))["outputs"][0]["data"] == [2, 4]
        broken = orjson.dumps({"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 2], "data": [1]}]})
        async with session.post(f"{base}/v2/models/doubler/infer", data=broken) as answer:
            assert answer.status == 400
            assert "needs 2 values" in (await answer.json(content_type=None))["error"]
        async with session.post(f"{base}/ts/models/doubler/infer", data=_infer([[1, 2]])) as answer:
            assert answer.status == 200
        async with session.post(f"{base}/ts/models/doubler/infer", data=_infer([[1, 2, 3]])) as answer:
            assert answer.status == 400, "the written signature is checked on the rewritten path"
            assert "model 'doubler' expects 2" in (await answer.json(content_type=None))["error"]


async def test_batching_splits_flat_outputs_passes_health_checks_and_keeps_headers(
    make_gateway: Any, torchserve_v2: TorchServe
) -> None:
    first = torchserve_v2
    routes = [
        {
            "name": "batched",
            "match": {"prefix": "/"},
            "backend": {"cluster": "up"},
            "filters": [{"batching": {"max_batch_size": 16, "max_queue_delay": 0.05}}],
        }
    ]
    config = gateway_config([f"127.0.0.1:{first.port}"], routes=routes)
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{gateway.data_port}"
        async with session.get(f"{base}/ping") as answer:
            assert answer.status == 200, "a GET health call is not an inference call"
            assert await answer.json(content_type=None) == {"status": "Healthy"}
        url = f"{base}/v2/models/doubler/infer"
        # A lone request goes upstream as sent; the server's headers come back with it.
        async with session.post(url, data=_infer([[1, 2]], id="lone")) as answer:
            assert answer.status == 200
            assert answer.headers["cache-control"] == "no-cache; no-store, must-revalidate, private"
            assert answer.headers["pragma"] == "no-cache"
            assert answer.headers["expires"] == "Thu, 01 Jan 1970 00:00:00 UTC"
            upstream_id = answer.headers["x-request-id"]
            assert upstream_id != answer.headers["x-turnout-request-id"], "both ids, each in its header"
            assert answer.headers.getall("x-request-id") == [upstream_id]
        # Merged requests: the server answers one flat list of 2 values per row.
        rows = [[[float(i), float(i + 1)]] * (1 + i % 3) for i in range(8)]
        before = first.calls()
        answers = await asyncio.gather(
            *(_post(session, url, _infer(member, id=f"m{i}")) for i, member in enumerate(rows))
        )
        assert first.calls() - before < len(rows), "some requests shared a batch"
        for i, (status, document, headers) in enumerate(answers):
            assert status == 200, document
            expected = [2 * value for row in rows[i] for value in row]
            assert document["outputs"][0]["data"] == expected
            assert document["outputs"][0]["shape"] == [len(expected)]
            assert document["id"] == f"m{i}", "each member keeps its own id"
            assert headers["cache-control"].startswith("no-cache")


async def _post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any, Any]:
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as answer:
        return answer.status, await answer.json(content_type=None), answer.headers


async def test_a_held_model_error_reaches_the_response_filters(
    make_gateway: Any, torchserve_pair: tuple[TorchServe, TorchServe]
) -> None:
    """A 5xx held back to read its body goes through the route's response filters like any answer."""
    first, _ = torchserve_pair
    route = {
        "name": "filtered",
        "match": {"prefix": "/"},
        "backend": {"cluster": "up"},
        "filters": [{"plugin": "tests.support.plugins:BODY_UPPER"}],
    }
    config = gateway_config([f"127.0.0.1:{first.port}"], routes=[route])
    before = first.calls()
    async with make_gateway(config) as gateway, aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{gateway.data_port}/predictions/doubler"
        for _ in range(3):
            async with session.post(
                url, data=b'[["x"]]', headers={"content-type": "application/json"}
            ) as answer:
                text = await answer.text()
                assert answer.status == 503
                assert "Prediction failed" in text and text.endswith("-- seen by body_upper")
        async with session.post(
            url, data=b"[[1, 2]]", headers={"content-type": "application/json"}
        ) as answer:
            assert answer.status == 200, "the connection after a model error is a fresh one"
        assert first.calls() - before == 4
        assert _endpoints(gateway)[0].total_failures == 0
