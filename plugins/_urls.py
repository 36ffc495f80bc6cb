"""URL checks shared by the filters' config models."""

from __future__ import annotations

from urllib.parse import urlsplit


def is_http_url(url: str) -> bool:
    """An http:// or https:// URL naming a host. `http://` alone passes a prefix check, and then
    every fetch from it fails, for as long as the gateway runs."""
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ in the host, say
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
