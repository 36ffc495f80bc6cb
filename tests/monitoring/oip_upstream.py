"""A tiny model server for the monitoring tests: `python -m tests.monitoring.oip_upstream --port N`.

POST /v2/models/{model}/infer answers every row with the same two class probabilities (an OIP v2
response, as a real classifier's); with `x-echo: 1` it adds an output `echo`, each row's first
feature (a regressor's values the test knows), and with `x-pad: N` a parameter of N bytes (a long
answer). /status/{code} answers with that status; /healthz with 200.
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
from aiohttp import web


async def infer(request: web.Request) -> web.Response:
    document = orjson.loads(await request.read())
    rows = int(document["inputs"][0]["shape"][0])
    answer: dict[str, Any] = {
        "model_name": request.match_info["model"],
        "model_version": "1",
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [rows, 2], "data": [0.8, 0.2] * rows}
        ],
    }
    if request.headers.get("x-echo") == "1":
        first = [row[0] for row in _rows(document["inputs"][0])]
        answer["outputs"].append({"name": "echo", "datatype": "FP64", "shape": [rows], "data": first})
    pad = int(request.headers.get("x-pad", "0"))
    if pad:
        answer["parameters"] = {"pad": "x" * pad}
    return web.Response(body=orjson.dumps(answer), content_type="application/json")


def _rows(tensor: dict[str, Any]) -> list[list[float]]:
    rows, width = tensor["shape"]
    data = tensor["data"]
    return [data[i * width : (i + 1) * width] for i in range(rows)]


async def status(request: web.Request) -> web.Response:
    return web.Response(status=int(request.match_info["code"]), text="status")


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_post("/v2/models/{model}/infer", infer)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
