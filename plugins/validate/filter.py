"""The validation filter: refuse requests the upstream would refuse, before the upstream sees them.

Body rules (every request): a body larger than `max_body_bytes` gets 413 (from Content-Length
before anything is read, else from the body read); a body whose media type is not in
`content_types` gets 415. With `oip_v2`, an inference request (POST /v2/models/{m}[/versions/{v}]
/infer) must decode as OIP v2 (JSON, or JSON + binary tensors) with every tensor's data matching its
shape and datatype, and then fit the model's signature: known inputs, the expected datatypes, the
expected rank and fixed dimensions, known requested outputs. Each refusal is a 400 JSON error that
names the input and the problem; a model the upstream does not serve gets 404.

When the metadata cannot be fetched, requests still get the structural checks and go through:
the upstream remains the authority, and a metadata outage must not become a route outage. A model
listed under `signatures` in the config is checked against that instead, and its metadata is never
fetched. What the metadata does not declare (no inputs listed, an output not listed) passes and is
logged once per model, unless `strict`. On a route with a rewrite, the path checked is the one the
upstream sees, so a client path like /predictions/m rewritten to /v2/models/m/infer is checked.

A body without a Content-Type is taken as JSON when JSON is accepted and the body, once read (with
`oip_v2`, or when another filter read it), starts as a JSON object or array: clients such as
tritonclient's synchronous HTTP client send none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import ClassVar, Final
from urllib.parse import unquote

from prometheus_client import Counter

from gateway.core.context import RequestContext
from gateway.core.errors import GatewayError
from gateway.core.filters import Decision, Filter, Response
from gateway.core.protocols.oip_v2 import InferRequest, decode_request
from plugins.validate.metadata import HttpMetadataFetcher, MetadataFetcher, SignatureCache
from plugins.validate.signature import ModelSignature, check_request

FILTER_NAME: Final = "validate"
DECISIONS: Final = ("allow", "unchecked", "too_large", "unsupported_type", "invalid", "unknown_model")
"""allow: passed every check; unchecked: passed the structural checks, metadata unavailable."""

_INFER_PATH: Final = re.compile(r"^/v2/models/([^/]+)(?:/versions/([^/]+))?/infer$")
_BINARY_HEADER: Final = "inference-header-content-length"
GRPC_MODEL_INFER: Final = "/inference.GRPCInferenceService/ModelInfer"
_JSON: Final = "application/json"
# Bytes JSON may start with after optional whitespace, for a body sent without a Content-Type.
_JSON_WHITESPACE: Final = b" \t\r\n"
_JSON_OPENERS: Final = (b"{", b"[")
# Models whose unchecked parts were logged; far above the models one route serves, it bounds memory
# when clients send arbitrary model names.
_MAX_NOTED_MODELS: Final = 1024
_log = logging.getLogger("turnout.validate")


class BodyRules(Filter):
    """Size and media-type rules, shared by both validation filters."""

    name = FILTER_NAME
    # Built from its YAML options alone: a reload that leaves them (and the route) unchanged keeps
    # this filter, state included (see gateway/runtime.py, `_chain_key`).
    keeps_state_across_reloads = True
    __slots__ = ("_allowed_types", "_count", "_max_body_bytes", "_too_large_hint", "_types_hint")

    def __init__(
        self,
        *,
        max_body_bytes: int | None,
        content_types: tuple[str, ...] | None,
        counters: dict[str, Counter],
    ) -> None:
        self._max_body_bytes = max_body_bytes
        self._allowed_types = frozenset(content_types) if content_types is not None else None
        self._types_hint = ", ".join(content_types or ())
        self._count = counters

    @property
    def max_body_bytes(self) -> int | None:
        """The largest body this route accepts: the data path should stop reading past it."""
        return self._max_body_bytes

    def _body_rules(self, ctx: RequestContext) -> Response | None:
        headers = ctx.headers
        declared = _content_length(headers.get("content-length"))
        limit = self._max_body_bytes
        if limit is not None:
            size = len(ctx.body) if ctx.body is not None else declared
            if size is not None and size > limit:
                self._count["too_large"].inc()
                return Response.error(
                    413,
                    f"the request body is {size} bytes; this route accepts at most {limit}",
                    "payload_too_large",
                )
        allowed = self._allowed_types
        has_body = bool(ctx.body) or bool(declared) or "transfer-encoding" in headers
        if allowed is not None and has_body:
            raw = headers.get("content-type")
            media_type = raw.split(";", 1)[0].strip().lower() if raw else ""
            if not media_type and _JSON in allowed and _may_be_json(ctx.body):
                media_type = _JSON
            if media_type not in allowed:
                self._count["unsupported_type"].inc()
                sent = f"content type '{media_type}' is" if media_type else "a body without a content type is"
                return Response.error(
                    415,
                    f"{sent} not accepted here; send one of: {self._types_hint}",
                    "unsupported_media_type",
                )
        return None


class BodyRulesFilter(BodyRules):
    """Only the body rules; decides from headers (and the body, when another filter had it read)."""

    __slots__ = ()

    def on_request(self, ctx: RequestContext) -> Decision:
        refusal = self._body_rules(ctx)
        if refusal is None:
            self._count["allow"].inc()
        return refusal


class OipValidateFilter(BodyRules):
    """Body rules, then OIP v2 inference requests checked against the model's signature."""

    needs_request_body: ClassVar[bool] = True
    __slots__ = (
        "_configured",
        "_http_fetcher",
        "_noted",
        "_require_all",
        "_signatures",
        "_strict",
        "_upstream_path",
    )

    def __init__(
        self,
        *,
        max_body_bytes: int | None,
        content_types: tuple[str, ...] | None,
        counters: dict[str, Counter],
        signatures: SignatureCache,
        http_fetcher: HttpMetadataFetcher | None,
        require_all_inputs: bool,
        strict: bool = False,
        configured: dict[str, ModelSignature] | None = None,
    ) -> None:
        super().__init__(max_body_bytes=max_body_bytes, content_types=content_types, counters=counters)
        self._signatures = signatures
        self._http_fetcher = http_fetcher
        self._require_all = require_all_inputs
        self._strict = strict
        self._configured = configured or {}
        self._noted: set[str] = set()
        self._upstream_path: Callable[[str], str] | None = None

    @property
    def has_metadata_source(self) -> bool:
        """True when the config names where metadata comes from (`metadata_from`)."""
        return self._http_fetcher is not None

    def set_metadata_fetcher(self, fetcher: MetadataFetcher) -> None:
        """Use `fetcher` for model metadata (instead of `metadata_from`); forgets what was fetched."""
        self._signatures.set_fetcher(fetcher)

    def use_upstream_path(self, upstream_path: Callable[[str], str]) -> None:
        """The route rewrites paths: check requests by the path the upstream will see."""
        self._upstream_path = upstream_path

    async def on_request(self, ctx: RequestContext) -> Decision:
        refusal = self._body_rules(ctx)
        if refusal is not None:
            return refusal
        match = None
        if ctx.method == "POST":
            rewrite = self._upstream_path
            match = _INFER_PATH.match(ctx.path if rewrite is None else rewrite(ctx.path))
        if match is None:
            if ctx.path != GRPC_MODEL_INFER:  # the gRPC front door checks those (check_inference)
                self._count["allow"].inc()
            return None
        # The path's own names: on a rewritten route the client's path may name no model at all.
        model = (
            unquote(match.group(1))
            if self._upstream_path is not None
            else ctx.model or unquote(match.group(1))
        )
        version = ctx.model_version or (unquote(match.group(2)) if match.group(2) else None)
        try:
            request = decode_request(ctx.body or b"", ctx.headers.get(_BINARY_HEADER))
        except GatewayError as error:
            self._count["invalid"].inc()
            return Response.error(error.status, error.message, error.code)
        return await self.check_inference(request, model, version)

    async def check_inference(self, request: InferRequest, model: str, version: str | None) -> Decision:
        """Check a decoded inference request against the model's signature: the refusal, or None.
        The request phase calls it for REST requests; the gRPC front door for `ModelInfer` calls,
        whose messages it decodes itself."""
        try:
            signature = self._configured.get(model)
            if signature is None:
                signature = await self._signatures.signature(model, version)
            if signature is not None:
                unchecked = check_request(
                    request, signature, require_all_inputs=self._require_all, strict=self._strict
                )
                if unchecked:
                    self._note(model, unchecked)
        except GatewayError as error:
            self._count["unknown_model" if error.status == 404 else "invalid"].inc()
            return Response.error(error.status, error.message, error.code)
        self._count["allow" if signature is not None else "unchecked"].inc()
        return None

    def _note(self, model: str, unchecked: tuple[str, ...]) -> None:
        """Say once per model what its metadata leaves unchecked (a log line per request would flood)."""
        noted = self._noted
        if model in noted or len(noted) >= _MAX_NOTED_MODELS:
            return
        noted.add(model)
        _log.warning(
            "model %r does not declare %s: such requests pass unchecked (set strict: true to refuse them)",
            model,
            ", ".join(unchecked),
        )

    async def start(self) -> None:
        if self._http_fetcher is not None:
            await self._http_fetcher.start()

    async def stop(self) -> None:
        if self._http_fetcher is not None:
            await self._http_fetcher.stop()


def _may_be_json(body: bytes | None) -> bool:
    """A body sent without a Content-Type that reads as JSON. An unread body (the body rules alone
    decide from headers) is not guessed at."""
    return body is not None and body.lstrip(_JSON_WHITESPACE)[:1] in _JSON_OPENERS


def _content_length(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        return None  # the data path refuses a malformed Content-Length itself
