"""Header edits, decided at build time: one for request headers, one for response headers."""

from __future__ import annotations

from gateway.core.context import RequestContext
from gateway.core.filters import Response
from plugins.transform.config import HeaderEdits


class RequestHeaderEdits:
    """Renames, removes and sets request headers, for the filters after this one and for upstream."""

    __slots__ = ("_add", "_remove", "_rename")

    def __init__(self, edits: HeaderEdits) -> None:
        self._rename = tuple(edits.rename.items())
        self._remove = edits.remove
        self._add = tuple(edits.add.items())

    def apply(self, ctx: RequestContext) -> None:
        for old, new in self._rename:
            value = ctx.headers.get(old)
            if value is not None:
                ctx.headers.pop(old, None)
                ctx.headers[new] = value
        for name in self._remove:
            ctx.headers.pop(name, None)
        for name, value in self._add:
            ctx.headers[name] = value


class ResponseHeaderEdits:
    """Renames, removes and sets response headers."""

    __slots__ = ("_add", "_remove", "_rename")

    def __init__(self, edits: HeaderEdits) -> None:
        self._rename = dict(edits.rename)
        self._remove = frozenset(edits.remove)
        self._add = tuple(edits.add.items())

    def apply(self, response: Response) -> None:
        headers = response.headers
        rename = self._rename
        if rename:
            # A renamed header replaces the headers already under its new name, as a set would.
            produced = {rename[name] for name, _ in headers if name in rename}
            headers = [
                (rename.get(name, name), value)
                for name, value in headers
                if name in rename or name not in produced
            ]
        if self._remove:
            headers = [(name, value) for name, value in headers if name not in self._remove]
        response.headers = headers
        for name, value in self._add:
            response.set_header(name, value)
