"""Many OIP v2 JSON exchanges of one shape decoded at once: the common case of monitored traffic.

The general decoder (`plugins.monitor.decode.decode`) checks and converts every tensor of every sample
on its own, about 25 µs a sample for one row of 30 features, most of the background task's cost. One
model's traffic mostly sends the same tensors (names, datatypes, shapes) and gets the same outputs
back, so here the samples of a step are grouped by that signature and each tensor's `data` lists of a
whole group become one array in one `np.array` call (a few µs a sample).

Only plain exchanges take this path: JSON tensors with flat numeric `data` and no tensor parameters,
responses with the same outputs and model version. A body that is anything else (binary tensors,
nested or text data, a value out of its datatype's range, a body that is not JSON) is left to the
general decoder, which reads it or names what is wrong with it: the two agree on what they accept.
A body that repeats one already read in the same step with other numbers is not parsed whole: its
data arrays are cut out by the first one's template (`plugins.monitor.body_template`), and the
arrays of a group are parsed in one call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
import orjson

from gateway.core import json_bounds
from gateway.core.errors import BadRequest
from plugins.monitor import body_template
from plugins.monitor.body_template import Pieces
from plugins.monitor.decode import Observation

# Numeric datatypes read here, with the array type the general decoder gives them (BOOL and BYTES
# go the general way: a label's text is not a number).
_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    name: np.dtype(kind)
    for name, kind in (
        ("FP16", np.float16),
        ("FP32", np.float32),
        ("FP64", np.float64),
        ("INT8", np.int8),
        ("INT16", np.int16),
        ("INT32", np.int32),
        ("INT64", np.int64),
        ("UINT8", np.uint8),
        ("UINT16", np.uint16),
        ("UINT32", np.uint32),
        ("UINT64", np.uint64),
    )
}
# A tensor this path reads has exactly these keys (name, datatype, shape, data); any other
# (parameters, binary sizes) goes the general way.
_TENSOR_KEY_COUNT: Final = 4

# Up to this size a body's brackets are counted with `bytes.count` (json_bounds' own threshold).
_SMALL_BODY: Final = 4096

Signature = tuple[tuple[str, str, tuple[int, ...]], ...]
Exchange = tuple[bytes, bytes]
GroupKey = tuple[Signature, Signature, str | None]
# Pairs of templates one step learns at most: a model's traffic has a few shapes; bodies that never
# repeat (keys in another order each time) stop paying for a template past these.
MAX_TEMPLATES: Final = 16


def decode_batch(exchanges: Sequence[Exchange]) -> tuple[list[tuple[list[int], Observation]], list[int]]:
    """Group the (request, response) bodies that share a signature and decode each group as one
    observation (rows and outputs stacked along the batch axis, as `joined_observations` would).

    Returns the groups, each with the indexes of its exchanges, and the indexes left for the
    general decoder."""
    groups: dict[GroupKey, list[tuple[int, list[Any], list[Any]]]] = {}
    left: list[int] = []
    templates = _Templates()
    for index, (request, response) in enumerate(exchanges):
        read = templates.read(request, response)
        if read is None:
            read = _read(request, response)
            if read is None:
                left.append(index)
                continue
            templates.learn(request, response, *read)
        key, inputs, outputs = read
        groups.setdefault(key, []).append((index, inputs, outputs))
    decoded: list[tuple[list[int], Observation]] = []
    for (inputs_signature, outputs_signature, version), members in groups.items():
        observation = _stacked(inputs_signature, outputs_signature, version, members)
        if observation is None:
            left.extend(index for index, _, _ in members)
        else:
            decoded.append(([index for index, _, _ in members], observation))
    left.sort()
    return decoded, left


class _Templates:
    """The templates of the bodies one step has read whole, and the group each pair of them makes."""

    __slots__ = ("groups", "requests", "responses")

    def __init__(self) -> None:
        self.requests: dict[bytes, Pieces] = {}
        self.responses: dict[bytes, Pieces] = {}
        self.groups: dict[tuple[Pieces, Pieces], GroupKey] = {}

    def read(self, request: bytes, response: bytes) -> tuple[GroupKey, list[Any], list[Any]] | None:
        """The group key and the data arrays' text (bytes, parsed later) of an exchange that repeats
        a known pair of templates; None when it does not."""
        if not self.groups:
            return None
        asked = self.requests.get(body_template.first_piece(request) or b"")
        answered = self.responses.get(body_template.first_piece(response) or b"")
        if asked is None or answered is None:
            return None
        key = self.groups.get((asked, answered))
        if key is None:
            return None
        inputs = body_template.spans(request, asked)
        outputs = body_template.spans(response, answered) if inputs is not None else None
        if inputs is None or outputs is None:
            return None
        return key, inputs, outputs

    def learn(
        self, request: bytes, response: bytes, key: GroupKey, inputs: list[Any], outputs: list[Any]
    ) -> None:
        if len(self.groups) >= MAX_TEMPLATES:
            return
        asked = body_template.learn(request, inputs)
        answered = body_template.learn(response, outputs)
        if asked is not None and answered is not None:
            self.requests.setdefault(asked[0], asked)
            self.responses.setdefault(answered[0], answered)
            self.groups[(asked, answered)] = key


def _read(request: bytes, response: bytes) -> tuple[GroupKey, list[Any], list[Any]] | None:
    """The signature and the tensors' data lists of one exchange, or None when it is not plain."""
    try:
        asked = _loads(request)
        answered = _loads(response)
    except (BadRequest, orjson.JSONDecodeError):
        return None
    if type(asked) is not dict or type(answered) is not dict or type(answered.get("model_name")) is not str:
        return None
    version = answered.get("model_version")
    if version is not None and type(version) is not str:
        return None
    inputs = _tensors(asked.get("inputs"))
    outputs = _tensors(answered.get("outputs"))
    if inputs is None or outputs is None or not inputs[0]:
        return None
    return (inputs[0], outputs[0], version), inputs[1], outputs[1]


def _loads(body: bytes) -> Any:
    """`json_bounds.loads` without its call for a small body of few containers, which it would
    hand to orjson as is (no deeper than it has containers): most samples, a few µs each."""
    if len(body) <= _SMALL_BODY and body.count(b"[") + body.count(b"{") <= json_bounds.MAX_DEPTH:
        return orjson.loads(body)
    return json_bounds.loads(body, "the body")


def _tensors(entries: Any) -> tuple[Signature, list[Any]] | None:
    # Plain checks, one per line of thought, no generator: this runs twice for every sample.
    if type(entries) is not list:
        return None
    signature: list[tuple[str, str, tuple[int, ...]]] = []
    data: list[Any] = []
    for entry in entries:
        # Four keys, and each of the four present (a missing one reads as None and fails below).
        if type(entry) is not dict or len(entry) != _TENSOR_KEY_COUNT:
            return None
        name, datatype, shape, values = (
            entry.get("name"),
            entry.get("datatype"),
            entry.get("shape"),
            entry.get("data"),
        )
        if type(name) is not str or not name or datatype not in _DTYPES or type(values) is not list:
            return None
        if type(shape) is not list or not shape:
            return None
        for dim in shape:
            if type(dim) is not int or dim <= 0:
                return None
        if len(values) != math.prod(shape):  # nested data, or data that does not fill the shape
            return None
        signature.append((name, datatype, tuple(shape)))
        data.append(values)
    if len(signature) > 1 and len({name for name, _, _ in signature}) != len(signature):
        return None
    return tuple(signature), data


def _stacked(
    inputs: Signature,
    outputs: Signature,
    version: str | None,
    members: list[tuple[int, list[Any], list[Any]]],
) -> Observation | None:
    """One observation for a group, or None when a tensor's values are not what its datatype says."""
    columns: list[np.ndarray] = []
    for position, (_, datatype, shape) in enumerate(inputs):
        array = _array([tensors[position] for _, tensors, _ in members], datatype, math.prod(shape))
        if array is None:
            return None
        columns.append(array.astype(np.float64, copy=False).reshape(len(members) * shape[0], -1))
    if len({block.shape[0] for block in columns}) > 1:
        return None  # inputs with different numbers of examples: the general decoder says so
    rows = columns[0] if len(columns) == 1 else np.hstack(columns)
    names = None
    if len(inputs) > 1:
        names = tuple(
            label
            for (name, _, _), block in zip(inputs, columns, strict=True)
            for label in ([name] if block.shape[1] == 1 else [f"{name}[{j}]" for j in range(block.shape[1])])
        )
    answers: list[tuple[str, np.ndarray]] = []
    for position, (name, datatype, shape) in enumerate(outputs):
        array = _array([tensors[position] for _, _, tensors in members], datatype, math.prod(shape))
        if array is None:
            return None
        answers.append((name, array.reshape(len(members) * shape[0], *shape[1:])))
    return Observation(rows, names, answers, version)


def _array(column: list[Any], datatype: str, width: int) -> np.ndarray | None:
    """(samples, values) in the datatype's array type from each sample's data (a list as parsed, or
    an array's text cut out by a template), or None when a value does not belong in it (text, a
    float in an integer tensor, a number out of range, rows of other lengths than `width`)."""
    try:
        array = np.array(_resolved(column))
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        return None
    dtype = _DTYPES[datatype]
    if (
        array.ndim != 2
        or array.shape[1] != width
        or array.dtype.kind not in ("iuf" if dtype.kind == "f" else "iu")
    ):
        return None
    if array.size == 0:
        return array.astype(dtype)
    if dtype.kind == "f":
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return None
        if dtype != array.dtype and float(np.abs(array).max()) > float(np.finfo(dtype).max):
            return None
    else:
        limits = np.iinfo(dtype)
        if int(array.min()) < limits.min or int(array.max()) > limits.max:
            return None
    return array.astype(dtype, copy=False)


def _resolved(column: list[Any]) -> list[Any]:
    """Each sample's data as a list: the arrays' text of every templated sample parsed in one call
    (flat arrays, so the joined text nests two levels deep)."""
    texts = [one for one in column if type(one) is bytes]
    if not texts:
        return column
    parsed = iter(orjson.loads(b"[[" + b"],[".join(texts) + b"]]"))
    return [next(parsed) if type(one) is bytes else one for one in column]
