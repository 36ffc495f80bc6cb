"""Request paths in one canonical form, decided once per request before anything reads the path.

The route matcher, the model-name parser, authz, rate-limit and cache keys, the access log and the
upstream all read the path this module returns, so no two of them can disagree about which resource
a request names. (When routes matched the raw path, `/%6Cimited/x` missed a `/limited/` route guarded
by a key, fell through to an open catch-all, and the upstream decoded it to `/limited/x`.)

The steps are those of Envoy's `normalize_path` + `merge_slashes` and of nginx:

1. percent-encoded unreserved characters (RFC 3986 2.3: ALPHA DIGIT - . _ ~) are decoded; every other
   escape stays, its hex digits upper-cased (RFC 3986 6.2.2.1), so `%c3%a9` and `%C3%A9` are one path;
2. repeated slashes are merged;
3. dot segments are removed (RFC 3986 5.2.4), `%2e%2e` included since step 1 decoded it; `..` never
   climbs above the root.

Refused with `InvalidPath` (a 400): an encoded slash or backslash (`%2F`, `%5C`) unless the listener
keeps them escaped (an upstream that decodes them would see other segments than the routes did); a
raw backslash (some servers read it as a slash), a fragment (`#`, which a client never sends),
invalid percent-encoding (`%zz`, a lone `%`), and a path that does not start with `/`. Control
characters, spaces and bytes above 0x7E never get here: the listener's parser (llhttp) refuses them
in a request target. The query string is not this module's business: it is forwarded as sent.
"""

from __future__ import annotations

from gateway.core.errors import InvalidPath

# RFC 3986 2.3: decoding these never changes what a URI means, so every server must treat the
# encoded and plain forms alike; decoding anything else could.
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_HEX = frozenset("0123456789abcdefABCDEF")
# Escapes of the separators: decoded, they would add segments that routes never saw.
_SLASHES = frozenset("/\\")


def normalize_path(path: str, keep_escaped_slashes: bool = False) -> str:
    """The canonical form of a request path (see the module docstring); raises InvalidPath.

    Returns `path` itself, without copying, when it holds nothing to normalise: no `%`, no `//`,
    no `/.`, no backslash or fragment. That is nearly every request, for a handful of substring
    tests."""
    if "%" in path or "//" in path or "/." in path or "\\" in path or "#" in path or path[:1] != "/":
        return _normalize(path, keep_escaped_slashes)
    return path


def _normalize(path: str, keep_escaped_slashes: bool) -> str:
    if path[:1] != "/":
        raise InvalidPath("the request path must start with '/'")
    if "\\" in path:
        raise InvalidPath("a backslash is not allowed in the request path")
    if "#" in path:
        raise InvalidPath("a fragment ('#') is not allowed in the request target")
    if "%" in path:
        path = _decode_unreserved(path, keep_escaped_slashes)
    return _remove_dot_segments(path)


def _decode_unreserved(path: str, keep_escaped_slashes: bool) -> str:
    pieces = path.split("%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
            raise InvalidPath("invalid percent-encoding in the request path ('%' must start '%XX')")
        char = chr(int(piece[:2], 16))
        if char in _UNRESERVED:
            out.append(char)
        else:
            if char in _SLASHES and not keep_escaped_slashes:
                raise InvalidPath(
                    "an encoded '/' or '\\' (%2F, %5C) is not allowed in the request path",
                )
            out.append("%" + piece[:2].upper())
        out.append(piece[2:])
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4 on an absolute path, with empty segments (repeated slashes) dropped too.
    A path that ended in a slash, `.` or `..` keeps its trailing slash, as the RFC's does."""
    segments = path.split("/")
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment and segment != ".":
            kept.append(segment)
    if not kept:
        return "/"
    tail = "/" if segments[-1] in ("", ".", "..") else ""
    return "/" + "/".join(kept) + tail
