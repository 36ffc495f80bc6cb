"""What keeps a web page from driving the admin API through the operator's browser.

A page on any site can make the browser send a "simple" cross-origin request (POST with
`text/plain`, a form, or no body) to `127.0.0.1:9901` without asking first, and a DNS-rebinding
page can even send it as same-origin under its own host name. The same-origin policy stops the page
from reading the answer, not the request from taking effect. So every call that changes state
(POST, PUT, PATCH, DELETE):

- must say `Content-Type: application/json` (415 otherwise): a browser sends that type
  cross-origin only after a CORS preflight, which the admin listener never grants;
- without an admin token, must not carry a foreign `Origin` (403): only the admin listener's own
  loopback origin is accepted, and a request without `Origin` (curl, scripts) is fine;
- without an admin token, must name a loopback `Host` (403): `localhost`, 127.0.0.0/8 or `[::1]`,
  any port. A rebinding page's requests carry its own host name.

With a token the token is the guard (a page cannot attach it), and only the content type is
checked.

Reads change nothing, but a rebinding page that reads `/admin/config` or `/metrics` learns the
topology behind the gateway. So without a token, a read on a listener bound to a loopback address
must name a loopback `Host` too. A listener bound to another address keeps serving reads whatever
the `Host`: Prometheus and the kubelet's probes reach it by the pod's address, and a rebinding page
can only reach this machine's loopback listeners.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from aiohttp import web

MUTATING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost."})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _refused(status: int, message: str) -> web.Response:
    return web.Response(body=orjson.dumps({"error": message}), status=status, content_type="application/json")


def is_loopback_host(host: str) -> bool:
    """True for `localhost`, 127.0.0.0/8 and `::1` (brackets and port already removed)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_host_header(value: str) -> str | None:
    """The host part of a Host header (`[::1]:9901` -> `::1`), or None when it does not parse."""
    if "@" in value:  # user-info has no place in Host: "evil@127.0.0.1" is not a loopback name
        return None
    try:
        return urlsplit(f"//{value}").hostname
    except ValueError:
        return None


def is_own_origin(origin: str, port: int) -> bool:
    """True when `origin` is the admin listener itself: http, a loopback host, the listener's port."""
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname is not None
        and is_loopback_host(parts.hostname)
        and (origin_port or 80) == port
        and parts.path in ("", "/")
    )


def _listener_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    # A Unix socket (a supervised process's private admin API) has a path for a name and no port.
    return int(sockname[1]) if isinstance(sockname, tuple) else None


def _bound_to_loopback(request: web.Request) -> bool:
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    # A Unix socket has no Host to rebind: only an IP listener on loopback needs the read check.
    return isinstance(sockname, tuple) and is_loopback_host(str(sockname[0]))


def _names_loopback_host(request: web.Request) -> bool:
    host = _split_host_header(request.headers.get("Host", ""))
    return host is not None and is_loopback_host(host)


def mutation_guard(check_origin_and_host: bool) -> Any:
    """The middleware; `check_origin_and_host` is true when no admin token is set."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in MUTATING_METHODS:
            if check_origin_and_host and _bound_to_loopback(request) and not _names_loopback_host(request):
                return _refused(403, "the Host header must name a loopback address, like 127.0.0.1")
            return await handler(request)
        if request.content_type != "application/json":
            return _refused(415, "calls that change state need Content-Type: application/json")
        if check_origin_and_host:
            if not _names_loopback_host(request):
                return _refused(403, "the Host header must name a loopback address, like 127.0.0.1")
            origin = request.headers.get("Origin")
            port = _listener_port(request)
            if origin is not None and (port is None or not is_own_origin(origin, port)):
                return _refused(403, f"calls from origin {origin[:100]!r} are refused")
        return await handler(request)

    return guard
