"""A test server that follows TorchServe 0.12's documented inference API, for the behaviours the
interop tests need. It stands in for TorchServe itself, which runs a Java frontend and its handlers
on PyTorch: PyTorch's wheels on PyPI pull the CUDA libraries (gigabytes), too much to install for
a test of how turnout treats TorchServe's answers.

    python -m tests.interop.torchserve_standin --port PORT --name NAME

Documented behaviours reproduced (TorchServe's inference API and its `kservev2` service envelope):
- `POST /predictions/{model}` runs the handler on the JSON body; `POST /v2/models/{model}/infer`
  runs it through the KServe v2 envelope, which answers one output `predict` with the handler's
  results flattened into one list (shape `[n]`, whatever the rows).
- A handler exception is answered 503 `{"code": 503, "type": "InternalServerException",
  "message": "Prediction failed"}`.
- `GET /v2/models/{model}` and `GET /v2` are not served: 404 (the v2 envelope covers inference only).
- Every answer carries TorchServe's own `x-request-id` and its no-cache headers (`cache-control`,
  `pragma`, `expires`). `GET /ping` is the health check.

The handler is `doubler`: each row of numbers comes back doubled; anything else raises. `GET
/standin/calls` (not TorchServe's) tells how many times the handler ran, so a test can see retries.
"""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from aiohttp import web

_NO_CACHE = {
    "cache-control": "no-cache; no-store, must-revalidate, private",
    "pragma": "no-cache",
    "expires": "Thu, 01 Jan 1970 00:00:00 UTC",
}
_HANDLER_FAILED = {"code": 503, "type": "InternalServerException", "message": "Prediction failed"}


class StandIn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0

    def _headers(self) -> dict[str, str]:
        return {"x-request-id": str(uuid.uuid4()), **_NO_CACHE}

    def _handler(self, rows: Any) -> list[list[float]]:
        """The model: each row doubled. Raises on anything that is not rows of numbers."""
        self.calls += 1
        if not isinstance(rows, list) or not rows:
            raise ValueError("expected a list of rows")
        doubled = []
        for row in rows:
            if not isinstance(row, list) or not all(isinstance(x, int | float) for x in row):
                raise ValueError(f"row {row!r} is not a list of numbers")
            doubled.append([2 * x for x in row])
        return doubled

    async def predictions(self, request: web.Request) -> web.Response:
        if request.match_info["model"] != self.name:
            return web.json_response({"code": 404, "type": "ModelNotFoundException"}, status=404)
        try:
            result = self._handler(await request.json())
        except ValueError:
            return web.json_response(_HANDLER_FAILED, status=503, headers=self._headers())
        return web.json_response(result, headers=self._headers())

    async def infer(self, request: web.Request) -> web.Response:
        if request.match_info["model"] != self.name:
            return web.json_response({"code": 404, "type": "ModelNotFoundException"}, status=404)
        document = await request.json()
        try:
            tensor = document["inputs"][0]
            width = tensor["shape"][1]
            data = tensor["data"]
            rows = [data[i : i + width] for i in range(0, len(data), width)]
            result = self._handler(rows)
        except (ValueError, KeyError, IndexError, TypeError):
            return web.json_response(_HANDLER_FAILED, status=503, headers=self._headers())
        flat = [value for row in result for value in row]
        answer = {
            "id": document.get("id") or str(uuid.uuid4()),
            "model_name": self.name,
            "outputs": [{"name": "predict", "shape": [len(flat)], "datatype": "FP64", "data": flat}],
        }
        return web.json_response(answer, headers=self._headers())

    async def ping(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "Healthy"}, headers=self._headers())

    async def not_served(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 404, "type": "ResourceNotFoundException"}, status=404)

    async def count(self, request: web.Request) -> web.Response:
        return web.json_response({"calls": self.calls})


def app(name: str) -> web.Application:
    standin = StandIn(name)
    application = web.Application()
    application.router.add_post("/predictions/{model}", standin.predictions)
    application.router.add_post("/v2/models/{model}/infer", standin.infer)
    application.router.add_get("/ping", standin.ping)
    application.router.add_get("/v2", standin.not_served)
    application.router.add_get("/v2/models/{model}", standin.not_served)
    application.router.add_get("/standin/calls", standin.count)
    return application


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default="doubler")
    options = parser.parse_args()
    web.run_app(app(options.name), host="127.0.0.1", port=options.port, print=None)
