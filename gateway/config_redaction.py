"""Secrets taken out of a config tree before `/admin/config` shows it.

The effective config is dumped to plain JSON values first; this module walks that tree and replaces
what would let a reader act as the gateway or its clients:

- values under keys that name a secret (`token`, `secret`, `password`, `sha256`, ...), whatever
  their type but a boolean: a YAML `password: 1234` is a number, a list of tokens is a list, and
  `forward_token: true` is a switch;
- the password in any URL (`redis://:pw@host`, `redis://user:pw@host`), a lone user-info part
  (`redis://pw@host`, which some clients read as the password), and query parameters that name a
  secret (`?password=`, `?token=`);
- the values of credential headers in header maps (`request_headers.add`, a health or smoke check's
  `headers`, header matches): `authorization`, `proxy-authorization`, `cookie`, `x-api-key`, and any
  header whose name suggests a secret;
- private members of inline JSON Web Keys (`d`, `p`, `q`, ... and the symmetric `k`);
- PEM private key material wherever it appears. Paths to key files stay visible: a path is not the
  key.

A value is replaced by `***`, so the shape of the config stays readable.
"""

from __future__ import annotations

import re
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK: Final = "***"

# Parts of a config key whose value is a secret. `sha256` holds API-key hashes: a hash of a short
# key can be brute-forced offline, so it is kept as private as the key.
SECRET_KEY_PARTS: Final = (
    "token",
    "secret",
    "password",
    "passwd",
    "api_key",
    "key_hash",
    "sha256",
    "private",
    "credential",
)
# Keys whose value is a map of header names to values (or to header matchers).
HEADER_MAP_KEYS: Final = frozenset({"add", "headers", "set"})
# Header names that carry credentials, and parts of names that suggest one (x-auth-token,
# x-functions-key, x-session-id, x-amz-signature).
CREDENTIAL_HEADERS: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
CREDENTIAL_HEADER_PARTS: Final = (
    "auth",
    "key",
    "token",
    "secret",
    "password",
    "session",
    "signature",
    "credential",
    "cookie",
)
# RFC 7517/7518 members that make a JWK private: RSA and EC private parts, and an `oct` key itself.
PRIVATE_JWK_MEMBERS: Final = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
# Query parameters of a URL that carry a secret (redis://host/0?password=..., ...?access_token=...).
SECRET_QUERY_PARTS: Final = ("password", "passwd", "token", "secret", "key", "auth", "signature")
# Any PEM block of private key material ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", ...).
_PEM_PRIVATE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")


def _names_secret(key: str) -> bool:
    lowered = key.lower()
    return any(part in lowered for part in SECRET_KEY_PARTS)


def is_credential_header(name: str) -> bool:
    """True for a header whose value is a credential (by name: the value is never inspected)."""
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or any(part in lowered for part in CREDENTIAL_HEADER_PARTS)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def redact_url(text: str) -> str:
    """The URL with its password (or lone user-info) and secret query values replaced."""
    try:
        parts = urlsplit(text)
    except ValueError:  # not a URL after all (an unbalanced "[", ...): hide it whole, to be safe
        return MASK
    netloc = parts.netloc
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(any(part in name.lower() for part in SECRET_QUERY_PARTS) for name, _ in pairs):
            query = urlencode(
                [
                    (name, MASK if any(part in name.lower() for part in SECRET_QUERY_PARTS) else value)
                    for name, value in pairs
                ],
                safe="*",
            )
    if netloc == parts.netloc and query == parts.query:
        return text
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _redact_string(text: str) -> str:
    if _PEM_PRIVATE.search(text):
        return MASK
    if "://" in text:
        return redact_url(text)
    return text


def _mask_header_value(value: Any) -> Any:
    """A header value hidden; a header matcher keeps its shape ({present: true} hides nothing)."""
    if isinstance(value, dict):
        return {k: MASK if isinstance(v, str) and v else v for k, v in value.items()}
    return MASK


def _redact_headers(headers: dict[str, Any]) -> dict[str, Any]:
    return {
        name: _mask_header_value(value) if is_credential_header(name) and not _empty(value) else redact(value)
        for name, value in headers.items()
    }


def redact(value: Any) -> Any:
    """A copy of a JSON-shaped config tree with its secrets replaced by `***`."""
    if isinstance(value, dict):
        private_jwk = "kty" in value
        out: dict[str, Any] = {}
        for key, item in value.items():
            if _empty(item) or isinstance(item, bool):  # a switch (forward_token: true) tells nothing
                out[key] = item
            elif _names_secret(key) or (private_jwk and key in PRIVATE_JWK_MEMBERS):
                out[key] = MASK
            elif key in HEADER_MAP_KEYS and isinstance(item, dict):
                out[key] = _redact_headers(item)
            else:
                out[key] = redact(item)
        return out
    if isinstance(value, list):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return _redact_string(value)
    return value
