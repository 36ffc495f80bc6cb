"""What one request costs against a limit: 1, its batch rows, or an estimate of its tokens.

These parse only the JSON part of a body (binary tensor data after it is skipped), and refuse only
JSON beyond `json_bounds`' limits (400): any other body they cannot read costs 1 unit, and the
validation filter or the upstream is the one that tells the caller what is wrong with it. Every
request costs at least 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from gateway.core import json_bounds
from gateway.core.context import RequestContext
from gateway.core.errors import BadRequest
from gateway.core.protocols.binary import split_body

# OpenAI's rule of thumb for English text: one token is about four characters.
CHARS_PER_TOKEN = 4
_BINARY_HEADER = "inference-header-content-length"

Cost = Callable[[RequestContext], int]


def cost_one(ctx: RequestContext) -> int:
    return 1


def cost_rows(ctx: RequestContext) -> int:
    """The batch size: the first dimension of an OIP v2 request's first input, or the number of
    examples of a KServe v1 request (`instances`, or the `inputs` list or columns)."""
    document = json_head(ctx)
    if document is None:
        return 1
    inputs = document.get("inputs")
    if isinstance(inputs, list) and inputs:
        first = inputs[0]
        if isinstance(first, dict):  # OIP v2: {"name", "shape", "datatype", ...}
            shape = first.get("shape")
            if isinstance(shape, list) and shape and isinstance(shape[0], int):
                return max(1, shape[0])
            return 1
        return len(inputs)  # KServe v1 columnar list
    if isinstance(inputs, dict):  # KServe v1 named columns
        column = next(iter(inputs.values()), None)
        return max(1, len(column)) if isinstance(column, list) else 1
    instances = document.get("instances")
    if isinstance(instances, list):
        return max(1, len(instances))
    return 1


def cost_tokens(ctx: RequestContext) -> int:
    """An estimate for OpenAI-style completions, chat and embeddings: the tokens the caller allows
    the answer (`max_tokens` or `max_completion_tokens`) plus the prompt's characters / 4."""
    document = json_head(ctx)
    if document is None:
        return 1
    characters = _text_length(document.get("prompt")) + _text_length(document.get("input"))
    messages = document.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                characters += _text_length(message.get("content"))
    answer = document.get("max_tokens", document.get("max_completion_tokens"))
    answer_tokens = answer if isinstance(answer, int) and answer > 0 else 0
    return max(1, math.ceil(characters / CHARS_PER_TOKEN) + answer_tokens)


COSTS: dict[str, Cost] = {"one": cost_one, "rows": cost_rows, "tokens": cost_tokens}


def prompt_texts(document: dict[str, Any]) -> tuple[list[str], int]:
    """The prompt's texts (prompt, input, chat messages' content, in order), and the number of
    token ids given as numbers (a prompt of ids is already tokens)."""
    texts: list[str] = []
    ids = _collect(document.get("prompt"), texts) + _collect(document.get("input"), texts)
    messages = document.get("messages")
    if isinstance(messages, list):
        for message in messages:
            if isinstance(message, dict):
                ids += _collect(message.get("content"), texts)
    return texts, ids


def _collect(value: Any, texts: list[str]) -> int:
    """Append the strings in `value` (a string, content parts, nested lists) to `texts`; return how
    many token ids it holds."""
    if isinstance(value, str):
        texts.append(value)
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return 1
    if isinstance(value, dict):
        return _collect(value.get("text"), texts)
    if isinstance(value, list):
        return sum(_collect(item, texts) for item in value)
    return 0


def json_head(ctx: RequestContext) -> dict[str, Any] | None:
    body = ctx.body
    if not body:
        return None
    try:
        head, _ = split_body(body, ctx.headers.get(_BINARY_HEADER))
        document = json_bounds.loads(head)
    except json_bounds.JsonTooComplex:
        raise
    except (BadRequest, orjson.JSONDecodeError):
        return None
    return document if isinstance(document, dict) else None


def _text_length(value: Any) -> int:
    """Characters of a prompt: a string, a list of strings or token ids, or chat content parts."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        total = 0
        for item in value:
            if isinstance(item, str):
                total += len(item)
            elif isinstance(item, int):
                total += CHARS_PER_TOKEN  # a token id is one token already
            elif isinstance(item, dict):
                total += _text_length(item.get("text"))
            elif isinstance(item, list):
                total += _text_length(item)
        return total
    return 0
