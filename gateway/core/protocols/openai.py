"""OpenAI-compatible request bodies and answers, as pure codecs (no I/O).

The model an OpenAI request is for is the `model` field of its JSON body (`/v1/chat/completions`,
`/v1/completions`, `/v1/embeddings`), never its path. The gateway reads it once, with the bounded
JSON loader, when a route's cluster speaks `openai` and the route matches on the model.

Errors are answered in OpenAI's shape, which the official clients turn into typed exceptions:
`{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any, Final

import orjson

from gateway.core.json_bounds import loads

MODELS_PATH: Final = "/v1/models"
"""OpenAI's model list; `/v1/models/{id}` looks one model up."""
_MODEL_PREFIX: Final = MODELS_PATH + "/"
# What the model list says owns each model: the gateway serves them, whatever runs behind it.
_OWNER: Final = "turnout"


class OpenAIRequestError(Exception):
    """A request body the gateway cannot route: its status and an OpenAI-shaped error body."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, code, param)


def error_body(message: str, code: str, param: str | None = None) -> bytes:
    """OpenAI's error shape; `type` is `invalid_request_error`, as OpenAI uses for 400 and 404."""
    return orjson.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
    )


def read_request(body: bytes) -> tuple[dict[str, Any], str]:
    """The parsed body and its `model`; `OpenAIRequestError` (400) when the body is not a JSON object
    with a non-empty string `model`."""
    try:
        document = loads(body)
    except orjson.JSONDecodeError as exc:
        raise OpenAIRequestError(400, f"the request body is not valid JSON: {exc}", "invalid_json") from None
    except Exception as exc:  # JsonTooComplex: its own message says which limit
        raise OpenAIRequestError(400, str(exc), "invalid_json") from None
    if not isinstance(document, dict):
        raise OpenAIRequestError(400, "the request body must be a JSON object", "invalid_json")
    model = document.get("model")
    if not isinstance(model, str) or not model:
        raise OpenAIRequestError(400, "the request body has no 'model' (a string)", "missing_model", "model")
    return document, model


def with_model(document: dict[str, Any], model: str) -> bytes:
    """The body re-encoded with its `model` replaced (a route's alias sends the upstream's name)."""
    document["model"] = model
    return orjson.dumps(document)


def unknown_model(model: str) -> OpenAIRequestError:
    return OpenAIRequestError(404, f"the model '{model}' does not exist", "model_not_found", "model")


def model_lookup(path: str) -> str | None:
    """The model id in `/v1/models/{id}`; "" for the list itself; None for any other path."""
    if path == MODELS_PATH:
        return ""
    if path.startswith(_MODEL_PREFIX):
        return path[len(_MODEL_PREFIX) :]
    return None


def model_card(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": _OWNER}


def model_list(models: Iterable[str], created: int) -> bytes:
    """OpenAI's `GET /v1/models` answer for `models`, in the order given."""
    return orjson.dumps({"object": "list", "data": [model_card(m, created) for m in models]})


def is_sampled(document: dict[str, Any]) -> bool:
    """A completion request that samples (temperature above 0): asked twice, it may answer twice
    differently, so one answer must not stand for the next. OpenAI's default temperature is 1, so a
    completion that names none samples; an embedding (no `messages`, no `prompt`) never does."""
    if "messages" not in document and "prompt" not in document:
        return False
    temperature = document.get("temperature")
    if temperature is None:
        return True
    return isinstance(temperature, bool) or not isinstance(temperature, int | float) or temperature > 0


def looks_like_completion(body: bytes) -> bool:
    """A cheap test on the raw body before any parse: it may be a chat or text completion request."""
    return b'"messages"' in body or b'"prompt"' in body


def with_fresh_id(body: bytes, now: float) -> bytes:
    """A stored completion answered again: a new `id` (same prefix, `chatcmpl-`) and `created`, so a
    client that keys completions by id never sees two the same. Any other body is returned as is."""
    try:
        document = loads(body, "a stored answer")
    except Exception:  # not JSON: not a completion; nothing to renew
        return body
    if not isinstance(document, dict) or not isinstance(document.get("id"), str):
        return body
    prefix = document["id"].partition("-")[0] or "cmpl"
    document["id"] = f"{prefix}-{secrets.token_hex(12)}"
    document["created"] = int(now)
    return orjson.dumps(document)


def asks_for_usage(document: dict[str, Any]) -> bool:
    """A streamed request that asks for the final usage chunk (`stream_options.include_usage`)."""
    options = document.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def add_usage_request(document: dict[str, Any]) -> None:
    """Ask the server for the usage chunk, keeping the client's other stream options."""
    options = document.get("stream_options")
    document["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}


def prompt_prefix(document: dict[str, Any], characters: int) -> str | None:
    """The first `characters` of the prompt (chat messages' roles and text in order, or a
    completion's `prompt`): requests that share it share a cached prefix on the server."""
    parts: list[str] = []
    size = 0
    messages = document.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if size >= characters:
                break
            if isinstance(message, dict):
                text = f"{message.get('role', '')}:{_text(message.get('content'))}\n"
                parts.append(text)
                size += len(text)
    else:
        text = _text(document.get("prompt"))
        parts.append(text)
        size = len(text)
    prefix = "".join(parts)[:characters]
    return prefix or None


def _text(value: Any) -> str:
    """A prompt or message content as text: a string, or the text of a list of parts or strings."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            item if isinstance(item, str) else str(item.get("text", "")) if isinstance(item, dict) else ""
            for item in value
        )
    return ""
