"""An OpenAI-compatible server for tests, written from OpenAI's published API reference.

No OpenAI-compatible mock installs and runs here without network access to its own models, so this
stand-in follows the reference for the parts turnout reads: `POST /v1/chat/completions` (plain and
`stream: true` as server-sent events, `data: [DONE]` last, the `usage` chunk only when
`stream_options.include_usage` is true), `POST /v1/completions`, `GET /v1/models`. Each completion
answers one token per word of `"reply"` (default "hello there friend"), so tests know the counts;
every answer names the model it was asked for and the stand-in's `name`, so tests see where a
request went. `GET /metrics` reports vLLM's queue gauge, as set by `POST /_waiting?n=N`. A body
with `"error_bytes": N` gets a 5xx (`"error_status"`, default 500) of at least N bytes (chunked
with `"error_chunked": true`), and
`GET /_connections` counts the connections the server has accepted.
Run: python tests/llm/openai_standin.py NAME PORT
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import orjson
from aiohttp import web

_DEFAULT_REPLY = "hello there friend"


def _prompt_tokens(body: dict[str, Any]) -> int:
    if "messages" in body:
        return sum(len(str(m.get("content", "")).split()) for m in body["messages"])
    return len(str(body.get("prompt", "")).split())


async def _large_error(request: web.Request, status: int, size: int, chunked: bool) -> web.StreamResponse:
    """A 5xx in OpenAI's error shape whose message makes it `size` bytes or more, with a length
    or chunked (in 16 KiB writes), as a server dumping a long traceback answers."""
    message = "x" * size
    error = orjson.dumps({"error": {"message": message, "type": "server_error", "code": None}})
    if not chunked:
        return web.Response(status=status, body=error, content_type="application/json")
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(error), 16384):
        await response.write(error[start : start + 16384])
    await response.write_eof()
    return response


def build_app(name: str) -> web.Application:
    seen: list[dict[str, Any]] = []
    peers: set[Any] = set()  # the clients' (address, port) pairs: one per connection
    counter = [0]

    async def completions(request: web.Request) -> web.StreamResponse:
        body = orjson.loads(await request.read())
        seen.append(body)
        if request.transport is not None:
            peers.add(request.transport.get_extra_info("peername"))
        counter[0] += 1
        if body.get("error_bytes"):
            status, size = int(body.get("error_status", 500)), int(body["error_bytes"])
            return await _large_error(request, status, size, bool(body.get("error_chunked")))
        chat = request.path.endswith("/chat/completions")
        words = str(body.get("reply", _DEFAULT_REPLY)).split()
        prompt = _prompt_tokens(body)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(words),
            "total_tokens": prompt + len(words),
        }
        ident = f"cmpl-{name}-{counter[0]}"
        base = {"id": ident, "created": int(time.time()), "model": body["model"], "system_fingerprint": name}
        if not body.get("stream"):
            text = " ".join(words)
            choice: dict[str, Any] = (
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                if chat
                else {"index": 0, "text": text, "finish_reason": "stop"}
            )
            kind = "chat.completion" if chat else "text_completion"
            return web.json_response({**base, "object": kind, "choices": [choice], "usage": usage})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        delay = float(body.get("delay_ms", 0)) / 1000
        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            delta: dict[str, Any] = (
                {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                if chat
                else {"index": 0, "text": piece, "finish_reason": None}
            )
            await response.write(
                b"data: " + orjson.dumps({**base, "object": kind, "choices": [delta]}) + b"\n\n"
            )
            if delay:
                await asyncio.sleep(delay)
        if (body.get("stream_options") or {}).get("include_usage"):
            last = {**base, "object": kind, "choices": [], "usage": usage}
            await response.write(b"data: " + orjson.dumps(last) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": f"{name}-model", "object": "model"}]})

    waiting = [0]

    async def metrics(request: web.Request) -> web.Response:
        # vLLM's gauge names and labels; the queue is whatever a test set with /_waiting.
        text = (
            "# TYPE vllm:num_requests_waiting gauge\n"
            f'vllm:num_requests_waiting{{model_name="{name}"}} {waiting[0]}.0\n'
            f'vllm:gpu_cache_usage_perc{{model_name="{name}"}} 0.0\n'
        )
        return web.Response(text=text, content_type="text/plain")

    async def set_waiting(request: web.Request) -> web.Response:
        waiting[0] = int(request.query["n"])
        return web.Response()

    async def last(request: web.Request) -> web.Response:
        return web.json_response(seen[-1] if seen else None)

    async def connections(request: web.Request) -> web.Response:
        return web.json_response(len(peers))

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/_last", last)
    app.router.add_get("/_connections", connections)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/_waiting", set_waiting)
    return app


if __name__ == "__main__":
    web.run_app(build_app(sys.argv[1]), host="127.0.0.1", port=int(sys.argv[2]), print=None)
