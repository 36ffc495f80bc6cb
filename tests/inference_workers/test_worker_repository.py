"""Repository behaviour through a worker's REST API: load, unload, lazy loading, the LRU cap, filters.

Each test runs its own worker in this process (on a loopback port) over its own copy of the demo
models, so tests can change the repository freely.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from inference_workers.selection import ModelSelection
from inference_workers.server import Worker, WorkerSettings

ROW = [0.5] * 30
RunningWorker = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture
def repository(tmp_path: Path, demo_repository: Path) -> Path:
    root = tmp_path / "models"
    for model in ("risk", "diabetes"):
        shutil.copytree(demo_repository / model, root / model)
    return root


@pytest.fixture
def running_worker(repository: Path) -> RunningWorker:
    @asynccontextmanager
    async def run(**settings: Any) -> AsyncIterator[str]:
        async with Worker(WorkerSettings(model_repository=repository, http_port=0, **settings)) as worker:
            yield f"http://127.0.0.1:{worker.http_port}"

    return run


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


def edit_config(repository: Path, model: str, version: int, **changes: Any) -> None:
    path = repository / model / str(version) / "model.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(changes)
    path.write_text(yaml.safe_dump(config))


async def call(http: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = b"" if body is None else orjson.dumps(body)
    async with http.request(method, url, data=data) as response:
        return response.status, orjson.loads(await response.read())


async def infer(
    http: aiohttp.ClientSession, url: str, model: str, version: int | None = None
) -> tuple[int, Any]:
    columns = 30 if model.startswith("risk") else 10
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    body = {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, columns], "data": ROW[:columns]}]
    }
    return await call(http, "POST", url + path, body)


async def states(http: aiohttp.ClientSession, url: str) -> dict[str, tuple[str, str]]:
    status, index = await call(http, "POST", url + "/v2/repository/index")
    assert status == 200
    return {f"{entry['name']}/{entry['version']}": (entry["state"], entry["reason"]) for entry in index}


async def test_unload_answers_503_until_loaded_again(
    running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    async with running_worker() as url:
        status, answer = await call(
            http, "POST", url + "/v2/repository/models/risk/unload", {"parameters": {"version": "1"}}
        )
        assert (status, answer) == (200, {"name": "risk", "unloaded": ["1"]})
        assert (await states(http, url))["risk/1"] == ("UNAVAILABLE", "unloaded")
        status, answer = await infer(http, url, "risk", 1)
        assert status == 503
        assert answer["error"] == (
            "model 'risk' version 1 is unloaded; load it with POST /v2/repository/models/risk/load"
        )
        assert (await call(http, "GET", url + "/v2/models/risk/versions/1/ready")) == (
            503,
            {"name": "risk", "ready": False},
        )
        status, answer = await infer(http, url, "risk")
        assert (status, answer["model_version"]) == (200, "2")
        assert (await call(http, "GET", url + "/v2/health/ready"))[0] == 200, (
            "an unloaded model is not a fault"
        )

        await call(http, "POST", url + "/v2/repository/models/risk/unload")
        assert (await infer(http, url, "risk"))[0] == 503
        status, answer = await call(http, "POST", url + "/v2/repository/models/risk/load")
        assert (status, answer) == (200, {"name": "risk", "loaded": ["1", "2"]})
        assert (await infer(http, url, "risk", 1))[0] == 200
        assert (await states(http, url))["risk/1"] == ("READY", "")


async def test_lazy_model_loads_on_its_first_request(
    repository: Path, running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    edit_config(repository, "diabetes", 1, lazy=True)
    async with running_worker() as url:
        assert (await states(http, url))["diabetes/1"] == ("UNAVAILABLE", "lazy: loads on its first request")
        assert (await call(http, "GET", url + "/v2/health/ready"))[0] == 200
        assert (await call(http, "GET", url + "/v2/models/diabetes/ready"))[0] == 503
        status, answer = await infer(http, url, "diabetes")
        assert status == 200, answer
        assert answer["outputs"][0]["shape"] == [1]
        assert (await states(http, url))["diabetes/1"] == ("READY", "")


async def test_cap_on_loaded_models_evicts_the_least_recently_used(
    running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    evicted = ("UNAVAILABLE", "evicted (least recently used); loads on its next request")
    async with running_worker(max_loaded_models=2) as url:
        assert await states(http, url) == {
            "diabetes/1": evicted,
            "risk/1": ("READY", ""),
            "risk/2": ("READY", ""),
        }
        assert (await call(http, "GET", url + "/v2/health/ready"))[0] == 200
        assert (await infer(http, url, "diabetes"))[0] == 200
        assert await states(http, url) == {
            "diabetes/1": ("READY", ""),
            "risk/1": evicted,
            "risk/2": ("READY", ""),
        }
        assert (await infer(http, url, "risk", 1))[0] == 200
        assert await states(http, url) == {
            "diabetes/1": ("READY", ""),
            "risk/1": ("READY", ""),
            "risk/2": evicted,
        }
        async with http.get(url + "/metrics") as response:
            assert "turnout_worker_models_loaded 2.0" in await response.text()
        status, answer = await infer(http, url, "risk")
        assert (status, answer["model_version"]) == (200, "1"), "without a version, a loaded version answers"


async def test_a_broken_model_makes_the_worker_unready_until_fixed(
    repository: Path, running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    edit_config(repository, "diabetes", 1, instances=2)
    (repository / "risk" / "1" / "model.onnx").write_bytes(b"not an onnx graph")
    async with running_worker() as url:
        found = await states(http, url)
        assert found["diabetes/1"][0] == "UNAVAILABLE"
        assert "bad model.yaml" in found["diabetes/1"][1]
        assert "instances: Extra inputs are not permitted" in found["diabetes/1"][1]
        assert found["risk/1"][1].startswith(
            "load failed: model 'risk' version 1: onnxruntime cannot load model.onnx"
        )
        assert (await call(http, "GET", url + "/v2/health/ready")) == (503, {"ready": False})
        status, answer = await infer(http, url, "risk", 1)
        assert status == 503
        assert "failed to load" in answer["error"] or "not available" in answer["error"]
        assert (await call(http, "POST", url + "/v2/repository/models/risk/load"))[0] == 503

        shutil.copy(repository / "risk" / "2" / "model.onnx", repository / "risk" / "1" / "model.onnx")
        edit_config(repository, "diabetes", 1, instances=None)
        path = repository / "diabetes" / "1" / "model.yaml"
        path.write_text(path.read_text().replace("instances: null\n", ""))
        assert (await call(http, "POST", url + "/v2/repository/models/risk/load"))[0] == 200
        assert (await call(http, "POST", url + "/v2/repository/models/diabetes/load"))[0] == 200
        assert (await call(http, "GET", url + "/v2/health/ready"))[0] == 200
        assert (await infer(http, url, "risk", 1))[0] == 200


async def test_models_filter_hides_everything_else(
    running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    async with running_worker(models=ModelSelection.parse("risk:1")) as url:
        status, metadata = await call(http, "GET", url + "/v2/models/risk")
        assert (status, metadata["versions"]) == (200, ["1"])
        assert (await infer(http, url, "risk", 2))[0] == 404
        assert (await infer(http, url, "diabetes"))[0] == 404
        assert list(await states(http, url)) == ["risk/1"]


async def test_load_finds_models_added_after_start(
    repository: Path, demo_repository: Path, running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    async with running_worker() as url:
        assert (await infer(http, url, "risk_copy"))[0] == 404
        shutil.copytree(demo_repository / "risk" / "1", repository / "risk_copy" / "3")
        status, answer = await call(http, "POST", url + "/v2/repository/models/risk_copy/load")
        assert (status, answer["loaded"]) == (200, ["3"])
        status, answer = await infer(http, url, "risk_copy")
        assert (status, answer["model_version"]) == (200, "3")


async def test_repository_calls_reject_bad_bodies(
    running_worker: RunningWorker, http: aiohttp.ClientSession
) -> None:
    async with running_worker() as url:
        async with http.post(url + "/v2/repository/models/risk/load", data=b"{") as response:
            assert response.status == 400
        status, answer = await call(http, "POST", url + "/v2/repository/models/risk/load", {"parameters": []})
        assert (status, answer["error"]) == (400, "'parameters' must be a JSON object")
        status, answer = await call(
            http, "POST", url + "/v2/repository/models/risk/unload", {"parameters": {"version": "9"}}
        )
        assert status == 404
        status, index = await call(http, "POST", url + "/v2/repository/index", {"ready": True})
        assert status == 200
        assert {entry["state"] for entry in index} == {"READY"}
