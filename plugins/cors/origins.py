"""Matching a request's Origin against the allowed origins, without regular expressions."""

from __future__ import annotations

from plugins.cors.config import ANY

_SCHEMES = ("http", "https")


def _split(origin: str) -> tuple[str, str, str]:
    """("https", "app.example.com", "8443") from "https://app.example.com:8443"; port "" when absent."""
    scheme, _, rest = origin.partition("://")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():  # no port, or the colon belonged to an IPv6 literal
        return scheme, rest, ""
    return scheme, host, port


class OriginMatcher:
    """Exact origins in a set; wildcard origins as (schemes, domain suffix, port)."""

    __slots__ = ("_exact", "_wildcards", "allows_any")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.allows_any = ANY in patterns
        self._exact = frozenset(pattern for pattern in patterns if "*" not in pattern)
        wildcards: list[tuple[tuple[str, ...], str, str]] = []
        for pattern in patterns:
            if pattern == ANY or "*" not in pattern:
                continue
            if pattern.startswith("*."):
                schemes: tuple[str, ...] = _SCHEMES
                _, host, port = _split("any://" + pattern)
            else:
                scheme, host, port = _split(pattern)
                schemes = (scheme,)
            wildcards.append((schemes, host[1:], port))  # "*.example.com" -> ".example.com"
        self._wildcards = tuple(wildcards)

    def allows(self, origin: str) -> bool:
        if self.allows_any:
            return True
        origin = origin.lower()
        if origin in self._exact:
            return True
        if not self._wildcards:
            return False
        scheme, host, port = _split(origin)
        for schemes, suffix, wanted_port in self._wildcards:
            if (
                scheme in schemes
                and port == wanted_port
                and len(host) > len(suffix)
                and host.endswith(suffix)
            ):
                return True
        return False
