"""The 401 answer of bearer-token authentication (RFC 6750 section 3).

A 401 must say how to authenticate (`WWW-Authenticate`, RFC 9110 section 11.6.1). Without an
`error` attribute the challenge means "no credentials were sent"; `error="invalid_token"` with an
`error_description` tells the client why the credentials it sent were refused. The body is the
gateway's usual JSON error, so callers that ignore headers still read the reason.
"""

from __future__ import annotations

import orjson

from gateway.core.errors import Unauthorized
from gateway.core.filters import Response


def _quoted(text: str) -> str:
    """A value for a quoted-string: RFC 6750 allows no '"' or '\\' in error_description."""
    return text.replace("\\", "/").replace('"', "'")


class BearerChallenge:
    """The 401 answers of one filter, with their headers and bodies prepared once."""

    __slots__ = ("_realm",)

    def __init__(self, realm: str) -> None:
        self._realm = _quoted(realm)

    def missing(self, message: str) -> PreparedAnswer:
        """The answer to a request that sent no credentials."""
        return PreparedAnswer(f'Bearer realm="{self._realm}"', message)

    def invalid(self, description: str) -> PreparedAnswer:
        """The answer to a request whose credentials were refused, saying why."""
        challenge = (
            f'Bearer realm="{self._realm}", error="invalid_token", error_description="{_quoted(description)}"'
        )
        return PreparedAnswer(challenge, description)


class PreparedAnswer:
    """One 401 answer; `response()` makes a fresh `Response` since later phases may change it."""

    __slots__ = ("_body", "_challenge")

    def __init__(self, challenge: str, message: str) -> None:
        self._challenge = challenge
        self._body = orjson.dumps({"error": message, "code": Unauthorized.code})

    def response(self) -> Response:
        return Response(
            Unauthorized.status,
            [("content-type", "application/json"), ("www-authenticate", self._challenge)],
            self._body,
        )
