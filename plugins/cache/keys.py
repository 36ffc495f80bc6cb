"""The cache key of a request: everything that could make two answers differ, hashed.

Route, method, path and query, model and version, experiment arm, the caller's tenant (and its
principal, with `vary_on: [principal]`), the configured vary headers, and the body. A JSON body is
canonicalised first (parsed and written back with sorted keys and no whitespace), so key order and
spacing do not split the cache, unless `canonical_json: false` says its clients always serialise
alike; any other body is hashed as sent. The canonical form of a body of 1 KiB or more is remembered
by its bytes (`body_memo`), so a repeated body is not parsed again. Every part is length-prefixed
before hashing, so no two different requests can run together into the same bytes.

Keys that never leave the process (`in_process`: the memory backend) read a JSON body of 1 KiB or
more by its structural form where it has one (`json_form`: members sorted, spacing dropped, the
numbers as sent, never parsed: 18 against 130 µs for a 16 KB tensor of floats), else by the
canonical form, and hash that form on its own first, putting its digest in the key instead of the
form, so a repeated body, whose digest is remembered with it, costs a hash of the short parts alone
(SHA-256 of a 16 KB form: 8 to 10 µs). Those keys differ from the Redis backend's, which gateways
of different versions share and which therefore keep the canonical form itself in the hash.

The key starts with the model name (percent-encoded, so it holds no ':') so that the Redis backend
can find one model's entries by prefix when they are invalidated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import orjson

from gateway.core import json_bounds
from gateway.core.context import RequestContext
from plugins.cache.body_memo import BodyMemo
from plugins.cache.json_form import structural_form

_ABSENT = b"\xff"  # never the first byte of a length prefix, so None differs from every string
# Tags in front of the hashed body, saying how it was read (canonical JSON text is never raw bytes
# that failed to parse, but the tag keeps that true by construction).
_JSON_BODY = b"j"
_RAW_BODY = b"r"
_DIGESTED_BODY = b"d"  # in-process keys: the SHA-256 of the body's form (tagged) follows
_STRUCTURAL_BODY = b"s"  # in-process keys: JSON with members sorted, numbers as sent (json_form)


@dataclass(frozen=True, slots=True)
class CacheKey:
    value: str
    model: str | None


def model_prefix(model: str | None) -> str:
    """The start of every key of one model's requests."""
    return quote(model or "", safe="") + ":"


def canonical_body(body: bytes | None) -> bytes:
    """The body as it is hashed: canonical JSON when it parses as JSON, else the bytes as sent.
    Raises `JsonTooComplex` (400) for JSON beyond the bounds, which could not be written back."""
    if not body:
        return _RAW_BODY
    try:
        document = json_bounds.loads(body)
    except orjson.JSONDecodeError:
        return _RAW_BODY + body
    return _JSON_BODY + orjson.dumps(document, option=orjson.OPT_SORT_KEYS)


def _digested_body(body: bytes | None) -> bytes:
    """The digest of the body's form, for keys that never leave this process: its structural form
    where it has one (`json_form`), else its canonical form."""
    if body:
        form = structural_form(body)
        if form is not None:
            digest = hashlib.sha256(_STRUCTURAL_BODY)
            digest.update(form)  # the same as hashing the two joined, without copying the form
            return _DIGESTED_BODY + digest.digest()
    return _DIGESTED_BODY + hashlib.sha256(canonical_body(body)).digest()


def _raw_body(body: bytes | None) -> bytes:
    """The body as sent, for routes whose clients always serialise alike (`canonical_json: false`)."""
    return _RAW_BODY + body if body else _RAW_BODY


class CacheKeyBuilder:
    """Builds the key of a request for one route, with that route's vary headers; `by_principal`
    puts the authenticated principal in the key too."""

    __slots__ = ("_body", "_by_principal", "_model", "_prefix", "_route", "_vary")

    def __init__(
        self,
        route: str,
        vary_headers: tuple[str, ...],
        *,
        by_principal: bool = False,
        canonical_json: bool = True,
        in_process: bool = False,
    ) -> None:
        self._route = _part(route)  # the same for every request of the route: encoded once
        self._vary = vary_headers
        self._by_principal = by_principal
        # Decided here, not per request: canonical JSON, or the body as sent (see CacheConfig).
        # Decided here too: keys kept in this process alone (the memory backend) hash a digest of the
        # canonical form, remembered with it; shared keys (Redis) hash the form itself.
        self._body: Callable[[bytes], bytes] = (
            BodyMemo(_digested_body if in_process else canonical_body) if canonical_json else _raw_body
        )
        # The last model's key prefix: most routes serve one model, and quoting it costs 0.6 µs.
        self._model: str | None = None
        self._prefix = model_prefix(None)

    @property
    def remembers_bodies(self) -> bool:
        """Whether bodies are looked up by their bytes (canonical JSON): then a second table keyed
        the same way costs the filter nearly nothing more (see `body_memo`)."""
        return isinstance(self._body, BodyMemo)

    def key(self, ctx: RequestContext) -> CacheKey:
        principal = ctx.principal
        tenant = principal.tenant if principal is not None else None
        principal_id = principal.id if principal is not None and self._by_principal else None
        parts = [self._route]
        for part in (
            ctx.method,
            ctx.path,
            ctx.query,
            ctx.model,
            ctx.model_version,
            ctx.arm,
            tenant,
            principal_id,
        ):
            if part is None:
                parts.append(_ABSENT)
            else:
                encoded = part.encode()
                parts.append(b"%d:%s" % (len(encoded), encoded))
        if self._vary:
            headers = ctx.headers
            parts.extend(_part_or_absent(headers.get(name)) for name in self._vary)
        # The parts joined and hashed at once, then the body: the same bytes, and so the same key,
        # as hashing each part in turn, at one call instead of two per part.
        digest = hashlib.sha256(b"".join(parts))
        body = ctx.body
        digest.update(self._body(body) if body else _RAW_BODY)
        model = ctx.model
        if model != self._model:
            self._model, self._prefix = model, model_prefix(model)
        return CacheKey(self._prefix + digest.hexdigest(), model)


def _part(text: str) -> bytes:
    """One part of a key as hashed: its UTF-8 length, a colon, and its UTF-8 bytes."""
    encoded = text.encode()
    return b"%d:%s" % (len(encoded), encoded)


def _part_or_absent(text: str | None) -> bytes:
    return _ABSENT if text is None else _part(text)
