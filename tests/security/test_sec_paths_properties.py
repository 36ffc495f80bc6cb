"""Properties of the path normaliser, over paths built from the pieces attacks are made of.

The oracle for dot segments is RFC 3986 5.2.4 written out as the RFC states it (an input buffer and
an output buffer), independently of gateway/core/paths.py's segment stack.
"""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from gateway.core.errors import InvalidPath
from gateway.core.paths import normalize_path

# Pure functions: many examples cost well under a second each.
EXAMPLES = 400
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None)

UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
PIECES = [
    "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", ".%2E", "%2f", "%2F", "%5c", "%5C", "\\", "%",
    "%z", "%4", "%25", "%2525", "%41", "%6C", "%6c", "%7e", "%7E", "%C3%a9", "%00", "%20", "#",
    "a", "b", "limited", "models", "~", "-", "_", ":", "@", "!", "$", "&", "'", "(", "*", "+", ",", ";", "=",
]  # fmt: skip
# What llhttp lets through in a request target: printable ASCII without the space.
TARGET_CHARS = "".join(chr(c) for c in range(0x21, 0x7F))

paths = st.lists(st.one_of(st.sampled_from(PIECES), st.text(TARGET_CHARS, max_size=3)), max_size=12).map(
    lambda parts: "/" + "".join(parts)
)
keep = st.booleans()

_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_BROKEN_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def _decode_unreserved(path: str) -> str:
    """Decode the escapes of unreserved characters and nothing else (the RFC 3986 6.2.2.2 step)."""

    def one(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in UNRESERVED else match.group(0)

    return _ESCAPE.sub(one, path)


def _rfc_remove_dot_segments(path: str) -> str:
    """RFC 3986 5.2.4, step by step."""
    source, output = path, ""
    while source:
        if source.startswith("../"):
            source = source[3:]
        elif source.startswith("./") or source.startswith("/./"):
            source = source[2:]
        elif source == "/.":
            source = "/"
        elif source.startswith("/../"):
            source = source[3:]
            output = output[: max(output.rfind("/"), 0)]
        elif source == "/..":
            source = "/"
            output = output[: max(output.rfind("/"), 0)]
        elif source in (".", ".."):
            source = ""
        else:
            end = source.find("/", 1)
            end = len(source) if end < 0 else end
            output, source = output + source[:end], source[end:]
    return output


def _normal_or_none(path: str, keep_escaped: bool) -> str | None:
    try:
        return normalize_path(path, keep_escaped)
    except InvalidPath:
        return None


@SETTINGS
@given(paths, keep)
def test_normalising_twice_changes_nothing(path: str, keep_escaped: bool) -> None:
    normal = _normal_or_none(path, keep_escaped)
    if normal is not None:
        assert normalize_path(normal, keep_escaped) == normal


@SETTINGS
@given(paths, keep)
def test_a_normal_path_has_no_empty_or_dot_segment_and_stays_under_the_root(
    path: str, keep_escaped: bool
) -> None:
    normal = _normal_or_none(path, keep_escaped)
    if normal is None:
        return
    assert normal.startswith("/")
    assert "//" not in normal
    inner = normal[1:-1] if normal.endswith("/") else normal[1:]
    segments = inner.split("/") if inner else []
    assert "." not in segments and ".." not in segments and "" not in segments
    for escape in _ESCAPE.findall(normal):
        assert chr(int(escape, 16)) not in UNRESERVED
        assert escape == escape.upper()


@SETTINGS
@given(paths, keep)
def test_decoding_unreserved_characters_first_changes_nothing(path: str, keep_escaped: bool) -> None:
    # Refused or not, and the same result: a client cannot pick a spelling that is treated differently.
    # A broken escape is refused outright (see below), even where decoding first would mend it:
    # `/%4%41` is refused, while `/%4A`, what a second decoding would make of it, is `/J`.
    assume(_BROKEN_ESCAPE.search(path) is None)
    assert _normal_or_none(_decode_unreserved(path), keep_escaped) == _normal_or_none(path, keep_escaped)


def test_a_broken_escape_is_not_mended_by_decoding_what_follows() -> None:
    with pytest.raises(InvalidPath):
        normalize_path("/%4%41")
    with pytest.raises(InvalidPath):
        normalize_path("/%%36%43imited/x")


@SETTINGS
@given(paths, keep)
def test_dot_segments_go_as_rfc_3986_removes_them(path: str, keep_escaped: bool) -> None:
    normal = _normal_or_none(path, keep_escaped)
    if normal is None:
        return
    merged = re.sub("/+", "/", _decode_unreserved(path))
    expected = re.sub("/+", "/", _rfc_remove_dot_segments(merged)) or "/"
    assert normal.upper() == expected.upper()  # hex case aside, which only the normaliser settles


@SETTINGS
@given(paths)
def test_an_upstream_that_decodes_everything_sees_the_same_segments(path: str) -> None:
    # With escaped slashes refused, decoding the rest cannot add a separator or a dot segment.
    normal = _normal_or_none(path, False)
    if normal is None:
        return
    decoded = [_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), segment) for segment in normal.split("/")]
    assert not any("/" in segment or "\\" in segment for segment in decoded)
    assert "." not in decoded[1:-1] and ".." not in decoded


@SETTINGS
@given(paths, keep)
def test_refusals_name_their_reason(path: str, keep_escaped: bool) -> None:
    try:
        normalize_path(path, keep_escaped)
    except InvalidPath as refused:
        assert refused.status == 400 and refused.code == "invalid_path"
        has_bad_escape = _BROKEN_ESCAPE.search(path) is not None
        has_slash_escape = re.search(r"%(2f|5c)", path, re.IGNORECASE) is not None
        assert "\\" in path or "#" in path or has_bad_escape or (has_slash_escape and not keep_escaped)
    else:
        assert "\\" not in path and "#" not in path


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/", "/"),
        ("/a/b/c/./../../g", "/a/g"),
        ("/mid/content=5/../6", "/mid/6"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/a/...", "/a/..."),
        ("/.well-known/x", "/.well-known/x"),
        ("/%7Euser/%7e", "/~user/~"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%2fb", "/a%2Fb"),
    ],
)
def test_known_paths(path: str, normal: str) -> None:
    assert normalize_path(path, keep_escaped_slashes=True) == normal


def test_a_path_with_nothing_to_do_is_returned_as_is() -> None:
    path = "/v2/models/risk/versions/3/infer"
    assert normalize_path(path) is path
