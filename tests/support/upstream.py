"""A real upstream HTTP server for tests, run as its own process: `python -m tests.support.upstream`.

Every answer names the upstream (`--name`) so tests can see where a request went. Paths:
  /healthz                  200 while healthy; POST /control/health?ok=0|1 flips it
  /echo, anything else      JSON: name, method, path, query, headers, body length and text
  /status/{code}            answers with that status
  /slow?ms=N                answers after N ms
  /sse?events=N&ms=M        text/event-stream, N events M ms apart
  /stream?chunks=N&size=S&ms=M   chunked body of N chunks
  /big?size=N               an N-byte body with a Content-Length
  /fail-once/{key}          503 the first time a key is seen, then 200
  /count                    how many requests this upstream has seen
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os

from aiohttp import web

NAME = web.AppKey("name", str)
STATE = web.AppKey("state", dict)


async def healthz(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state["health_checks"] += 1
    if state["healthy"]:
        return web.Response(text="")
    return web.Response(status=503, text="unhealthy")


async def control_health(request: web.Request) -> web.Response:
    request.app[STATE]["healthy"] = request.query.get("ok", "1") == "1"
    return web.json_response({"healthy": request.app[STATE]["healthy"]})


async def count(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"requests": state["requests"], "health_checks": state["health_checks"]})


async def status(request: web.Request) -> web.Response:
    code = int(request.match_info["code"])
    return web.json_response({"name": request.app[NAME], "status": code}, status=code)


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(int(request.query.get("ms", "100")) / 1000)
    return web.json_response({"name": request.app[NAME], "slow": True})


async def sse(request: web.Request) -> web.StreamResponse:
    events = int(request.query.get("events", "3"))
    delay = int(request.query.get("ms", "100")) / 1000
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for i in range(events):
        await response.write(f"data: event {i}\n\n".encode())
        if i < events - 1:
            await asyncio.sleep(delay)
    await response.write_eof()
    return response


async def stream(request: web.Request) -> web.StreamResponse:
    chunks = int(request.query.get("chunks", "4"))
    size = int(request.query.get("size", "1024"))
    delay = int(request.query.get("ms", "0")) / 1000
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for i in range(chunks):
        await response.write(bytes([97 + i % 26]) * size)
        if delay:
            await asyncio.sleep(delay)
    await response.write_eof()
    return response


async def big(request: web.Request) -> web.Response:
    size = int(request.query.get("size", "1048576"))
    return web.Response(body=b"x" * size, content_type="application/octet-stream")


async def fail_once(request: web.Request) -> web.Response:
    seen = request.app[STATE]["seen"]
    key = request.match_info["key"]
    if key not in seen:
        seen.add(key)
        return web.json_response({"name": request.app[NAME], "error": "first try fails"}, status=503)
    return web.json_response({"name": request.app[NAME], "ok": True})


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "name": request.app[NAME],
            "method": request.method,
            "path": request.path,
            "query": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body_length": len(body),
            "body": body.decode("utf-8", "replace")[:4096],
        }
    )


@web.middleware
async def counting(request: web.Request, handler):  # type: ignore[no-untyped-def]
    state = request.app[STATE]
    if not request.path.startswith(("/healthz", "/control", "/count")):
        state["requests"] += 1
        # --fail-rate: a deterministic share of answers fail (every k-th request), like a bad release.
        every = state["fail_every"]
        if every and state["requests"] % every == 0:
            return web.json_response({"name": request.app[NAME], "error": "injected failure"}, status=500)
    return await handler(request)


def build_app(name: str, fail_rate: float = 0.0) -> web.Application:
    app = web.Application(middlewares=[counting], client_max_size=64 * 1024 * 1024)
    app[NAME] = name
    app[STATE] = {
        "healthy": True,
        "requests": 0,
        "health_checks": 0,
        "seen": set(),
        "fail_every": round(1 / fail_rate) if fail_rate else 0,
    }
    app.router.add_get("/healthz", healthz)
    app.router.add_post("/control/health", control_health)
    app.router.add_get("/count", count)
    app.router.add_route("*", "/status/{code}", status)
    app.router.add_route("*", "/slow", slow)
    app.router.add_get("/sse", sse)
    app.router.add_get("/stream", stream)
    app.router.add_get("/big", big)
    app.router.add_route("*", "/fail-once/{key}", fail_once)
    app.router.add_route("*", "/{tail:.*}", echo)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", default=f"upstream-{os.getpid()}")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of answers that are 500s")
    args = parser.parse_args()
    print(json.dumps({"listening": args.port}), flush=True)
    web.run_app(
        build_app(args.name, args.fail_rate), host="127.0.0.1", port=args.port, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
