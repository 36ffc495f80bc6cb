"""Watching one OpenAI answer go by: when its tokens arrive, and the `usage` the server reports.

A streamed completion is a server-sent event stream of `data: {chunk}` events ending with
`data: [DONE]`; with `stream_options.include_usage` the server sends one more chunk before the end,
with empty `choices` and the request's `usage`. The gateway asks for that chunk on every streamed
request (`gateway/openai_routing.py`), so usage is known even for clients that did not ask, and
removes it again from what such a client receives, so the client sees the stream it asked for.

The meter sees each piece of the answer as it is relayed (`feed`), and returns what to relay: the
same bytes, except that with the usage chunk to remove it relays whole events only (an event split
across packets waits for its end, which follows within the same write on real servers). A plain
JSON answer is kept (up to `_MAX_JSON_BYTES`) and its `usage` read at the end.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any, Final

from gateway.core.errors import GatewayError
from gateway.core.json_bounds import loads
from gateway.response_phase import is_event_stream

if TYPE_CHECKING:
    from gateway.core.context import RequestContext
    from gateway.llm_metrics import LlmMetrics

# A completion's JSON answer is kilobytes; an embeddings answer for a large batch reaches megabytes.
# Past 8 MiB the usage is not worth holding a copy of the answer for.
_MAX_JSON_BYTES: Final = 8 * 1024 * 1024
_EVENT_END: Final = b"\n\n"
_DATA: Final = b"data:"
_DONE: Final = b"[DONE]"


class CompletionMeter:
    """One request's answer, watched; built per request, used by the data path's callbacks only."""

    __slots__ = (
        "_fed",
        "_json",
        "_json_size",
        "_pending",
        "_stream",
        "completion_tokens",
        "first_token_at",
        "last_token_at",
        "model",
        "prompt_tokens",
        "strip_usage",
        "token_events",
    )

    def __init__(self, model: str, strip_usage: bool) -> None:
        self.model = model
        self.strip_usage = strip_usage
        """The client did not ask for the usage chunk: it is removed from what the client gets."""
        self._stream: bool | None = None
        self._fed = False
        self._pending = b""
        self._json: list[bytes] = []
        self._json_size = 0
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.token_events = 0
        self.prompt_tokens: int | None = None
        self.completion_tokens: int | None = None

    def on_head(self, headers: list[tuple[bytes, bytes]], content_length: int | None) -> None:
        """A stream is told by its Content-Type. An answer of known length is relayed untouched:
        removing bytes would break its framing."""
        self._stream = is_event_stream(headers)
        if content_length is not None:
            self.strip_usage = False

    def feed(self, data: bytes) -> bytes:
        """A piece of the answer on its way to the client; returns what to relay (maybe b"")."""
        self._fed = True
        if not self._stream:
            if self._json_size + len(data) <= _MAX_JSON_BYTES:
                self._json.append(data)
            self._json_size += len(data)
            return data
        text = self._pending + data if self._pending else data
        end = text.rfind(_EVENT_END)
        if end < 0:
            self._pending = text
            return b"" if self.strip_usage else data
        whole, self._pending = text[: end + 2], text[end + 2 :]
        kept = self._events(whole)
        return kept if self.strip_usage else data

    def _events(self, whole: bytes) -> bytes:
        """Read the complete events in `whole`; what of them the client gets."""
        now = monotonic()
        kept: list[bytes] = []
        for event in whole.split(_EVENT_END):
            if not event.strip():
                continue
            if self._read_event(event, now):
                kept.append(event + _EVENT_END)
        return b"".join(kept)

    def _read_event(self, event: bytes, now: float) -> bool:
        """Note what one event says; False for a usage-only chunk the client did not ask for."""
        payload = b"".join(
            line[len(_DATA) :].strip() for line in event.split(b"\n") if line.startswith(_DATA)
        )
        if not payload or payload == _DONE:
            return True
        try:
            chunk = loads(payload, "a streamed chunk")
        except (ValueError, GatewayError):
            return True  # not ours to judge: relayed as sent
        if not isinstance(chunk, dict):
            return True
        choices = chunk.get("choices")
        if choices and _has_text(choices):
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
            self.token_events += 1
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._note_usage(usage)
            return not (self.strip_usage and not choices)
        return True

    def _note_usage(self, usage: dict[str, Any]) -> None:
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int):
            self.prompt_tokens = prompt
        if isinstance(completion, int):
            self.completion_tokens = completion

    def read_whole(self, body: bytes) -> None:
        """An answer the filters held back whole (never relayed piece by piece): its usage only."""
        if self._fed:
            return
        if self._stream or body.lstrip().startswith(_DATA):
            self._stream = True
            saved = self.strip_usage
            self.strip_usage = False  # already sent as the filters left it
            self._events(body)
            self.strip_usage = saved
            self.first_token_at = self.last_token_at = None  # arrival times of a held answer mean nothing
            return
        self._json, self._json_size, self._stream = [body], len(body), False

    def close(self, ctx: RequestContext, metrics: LlmMetrics) -> None:
        """The answer ended (or was cut short): record its latencies and usage."""
        if self._stream is False and self._json and self._json_size <= _MAX_JSON_BYTES:
            try:
                answer = loads(b"".join(self._json), "the answer")
            except (ValueError, GatewayError):
                answer = None
            if isinstance(answer, dict) and isinstance(answer.get("usage"), dict):
                self._note_usage(answer["usage"])
        ctx.prompt_tokens, ctx.completion_tokens = self.prompt_tokens, self.completion_tokens
        route, model = ctx.route, self.model
        first, last = self.first_token_at, self.last_token_at
        if first is not None:
            metrics.time_to_first_token.labels(route, model).observe(max(first - ctx.started, 0.0))
            tokens = self.completion_tokens if self.completion_tokens is not None else self.token_events
            if last is not None and tokens > 1 and last > first:
                metrics.time_per_output_token.labels(route, model).observe((last - first) / (tokens - 1))
        if ctx.status < 400 and (self.prompt_tokens is not None or self.completion_tokens is not None):
            principal = ctx.principal
            metrics.record_usage(
                (principal.tenant or "") if principal is not None else "",
                principal.id if principal is not None else "",
                model,
                route,
                self.prompt_tokens or 0,
                self.completion_tokens or 0,
            )


def _has_text(choices: Any) -> bool:
    """A chunk that carries output: a delta with content (chat) or text (completions)."""
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and (delta.get("content") or delta.get("tool_calls")):
            return True
        if choice.get("text"):
            return True
    return False
