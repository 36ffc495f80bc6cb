"""The structural form of a JSON body (in-process cache keys): equal documents written differently
get one form or fall back to the canonical one, and bodies that mean different things never share
a form (a false hit would serve one request another's answer)."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.core.context import RequestContext
from plugins.cache.json_form import MIN_BYTES, structural_form
from plugins.cache.keys import CacheKeyBuilder

# Keys and strings without backslashes or quotes once written (the form's own territory), plus
# some that need escapes (which send the body to the canonical form).
_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6)
_NUMBERS = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)
_SCALARS = st.one_of(st.none(), st.booleans(), _NUMBERS, _TEXT)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.lists(_NUMBERS, min_size=1, max_size=40),  # a tensor's data
        st.dictionaries(_TEXT, inner, max_size=6),
    ),
    max_leaves=30,
)
_PAD = "p" * MIN_BYTES  # bodies under MIN_BYTES take the canonical form


def _padded(document: Any) -> dict[str, Any]:
    return {"doc": document, "pad": _PAD}


def _meaning(body: bytes) -> bytes | None:
    """What a strict reader takes the body to mean (None: not JSON): orjson's sorted form, in which
    1 and 1.0, or -0.0 and 0.0, differ as they do on the wire."""
    try:
        return orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        return None


def _shuffled(document: Any, rng: random.Random) -> Any:
    if isinstance(document, dict):
        items = list(document.items())
        rng.shuffle(items)
        return {key: _shuffled(value, rng) for key, value in items}
    if isinstance(document, list):
        return [_shuffled(value, rng) for value in document]
    return document


def _writings(document: Any, seed: int) -> list[bytes]:
    """The same document as different serialisers write it, the numbers written alike (Python's
    json: repr of each float)."""
    shuffled = _shuffled(document, random.Random(seed))
    return [
        json.dumps(document, ensure_ascii=False).encode(),
        json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(),
        json.dumps(shuffled, ensure_ascii=False, separators=(",", ":")).encode(),
        json.dumps(shuffled, ensure_ascii=False, indent=2).encode(),
        json.dumps(document, ensure_ascii=False, sort_keys=True, indent="\t").encode(),
        json.dumps(shuffled).encode(),  # non-ASCII escaped: a backslash, so the canonical form
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS, st.integers(0, 2**16))
def test_one_document_written_differently_gets_one_form_or_the_canonical_one(
    document: Any, seed: int
) -> None:
    forms = {structural_form(body) for body in _writings(_padded(document), seed)}
    forms.discard(None)
    assert len(forms) <= 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_DOCUMENTS, _DOCUMENTS, st.integers(0, 2**16))
def test_documents_that_differ_never_share_a_form(first: Any, second: Any, seed: int) -> None:
    one, other = _writings(_padded(first), seed)[seed % 5], _writings(_padded(second), seed + 1)[seed % 4]
    if _meaning(one) != _meaning(other):
        form = structural_form(one)
        assert form is None or form != structural_form(other)


_EDITS = st.sampled_from(
    [b" ", b"\n", b",", b":", b"[", b"]", b"{", b"}", b'"', b"0", b"1", b"-", b".", b"e", b"\x0c"]
)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    _DOCUMENTS,
    st.integers(0, 2**16),
    st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 2), _EDITS), min_size=1, max_size=3),
)
def test_a_body_changed_in_a_few_bytes_shares_a_form_only_if_it_means_the_same(
    document: Any, seed: int, edits: list[tuple[int, int, bytes]]
) -> None:
    """Spaces inserted inside numbers, brackets and commas added or dropped, literals broken: the
    edited body's form equals the original's only when a strict reader reads the same document."""
    body = _writings(_padded(document), seed)[seed % 5]
    edited = bytearray(body)
    for where, how, byte in edits:
        at = where % (len(edited) + 1)
        if how == 0:
            edited[at:at] = byte  # insert
        elif how == 1:
            edited[at : at + 1] = byte  # replace
        else:
            del edited[at : at + 1]
    changed = bytes(edited)
    form = structural_form(changed)
    if form is not None and form == structural_form(body):
        assert _meaning(changed) == _meaning(body)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (b"[1 2]", b"[12]"),  # spacing inside a number is an error, not spacing
        (b"[1,\x0c2]", b"[1,2]"),  # form feed is not JSON's whitespace
        (b'{"a":1,"a":2}', b'{"a":2,"a":1}'),  # the last of a repeated key is read
        (b"[1.50]", b"[1.5]"),  # the same number written two ways: a false miss, never a hit
        (b'{"a":[1]} ', b'{"a":[1]} x'),
        (b'["a b"]', b'["ab"]'),
    ],
)
def test_bodies_that_read_differently_get_different_forms(one: bytes, other: bytes) -> None:
    pad = b' , "pad": "' + _PAD.encode() + b'"}'
    one_form, other_form = structural_form(b'{"x":' + one + pad), structural_form(b'{"x":' + other + pad)
    assert one_form is None or one_form != other_form


def test_what_the_form_leaves_to_the_canonical_one() -> None:
    pad = _PAD.encode()
    assert structural_form(b'{"a": [1, 2]}') is None  # under MIN_BYTES
    assert structural_form(b'{"a\\u0062": 1, "p": "' + pad + b'"}') is None  # an escape
    assert structural_form(b'{"a": [1 , 2], "p": "' + pad + b'"}') is None  # spacing before a comma
    assert structural_form(b'{"a": [1\n,2], "p": "' + pad + b'"}') is None
    spaced = structural_form(b'{"a": [ 1,\n\t 2 ], "p": "' + pad + b'"}')
    assert spaced == structural_form(b'{"a":[1,2],"p":"' + pad + b'"}') is not None
    assert structural_form(b"[" * 100 + b"]" * 100 + b" " * MIN_BYTES) is None  # too deep
    many = orjson.dumps([{"k": i} for i in range(200)])
    assert structural_form(many) is None  # more tokens than its budget: orjson reads it faster
    assert structural_form(b'{"a": 1} {"b": 2}' + b" " * MIN_BYTES) is None  # two documents


def _oip(
    values: list[float], *, order: tuple[str, ...] = ("name", "shape", "datatype", "data")
) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [1, len(values)], "datatype": "FP32", "data": values}
    return {"inputs": [{key: tensor[key] for key in order}]}


def test_an_inference_body_is_keyed_by_its_structure_in_process_and_canonically_for_redis() -> None:
    values = [round(0.125 + i % 97 / 100, 3) for i in range(400)]
    document = _oip(values)
    bodies = [
        orjson.dumps(document),
        orjson.dumps(_oip(values, order=("data", "datatype", "shape", "name"))),
        json.dumps(document).encode(),
        json.dumps(document, indent=2, sort_keys=True).encode(),
    ]
    changed = orjson.dumps(_oip([*values[:-1], 0.5]))

    def ctx(body: bytes) -> RequestContext:
        ctx = RequestContext("POST", "/v2/models/m/infer", "", {}, "10.0.0.1", 0.0)
        ctx.model, ctx.body = "m", body
        return ctx

    for in_process in (True, False):
        builder = CacheKeyBuilder("infer", (), in_process=in_process)
        keys = {builder.key(ctx(body)).value for body in bodies}
        assert len(keys) == 1
        assert builder.key(ctx(changed)).value not in keys
    assert all(structural_form(body) is not None for body in bodies)
