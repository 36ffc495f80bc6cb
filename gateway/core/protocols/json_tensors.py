"""Tensor `data` in JSON bodies <-> numpy arrays, with the checks a caller needs to hear about.

Numbers go through `np.asarray` on the parsed list (one C loop, no per-element Python), then the
inferred kind is checked against the declared datatype, so `1.5` for an INT64 input or `"a"` for an
FP32 input is a 400 naming the input rather than a silent truncation. Narrow integer and float types
are range-checked, because numpy would otherwise wrap or overflow quietly. BYTES elements are JSON
strings (UTF-8) and are the one place with a Python loop, which their variable size forces anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import numpy as np

from gateway.core.errors import BadRequest
from gateway.core.protocols.datatypes import BYTES, datatype_of, element_count, format_shape, numpy_dtype

# numpy kinds a JSON array may parse into, per datatype family: b bool, i signed, u unsigned
# (integers past 2**63), f float. Integers are fine for float tensors; nothing else converts.
_ACCEPTED_KINDS: Final = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}
_KIND_NOUN: Final = {"b": "booleans", "i": "integers", "u": "integers", "f": "numbers"}


def array_from_json(data: Any, datatype: str, shape: Sequence[int], where: str) -> np.ndarray:
    """A JSON `data` value (flat or nested) -> an array of `shape` in the datatype's dtype."""
    dtype = numpy_dtype(datatype, where)
    count = element_count(shape)
    if datatype == BYTES:
        flat: np.ndarray = _bytes_from_json(data, where)
    else:
        flat = _numbers_from_json(data, dtype, where)
    if flat.size != count:
        raise BadRequest(f"{where}: shape {format_shape(shape)} needs {count} values, got {flat.size}")
    return flat.reshape(shape)


def datatype_of_json(data: Any) -> str:
    """The datatype a JSON `data` value reads as when its sender did not say: BOOL, INT64, FP64 or
    BYTES, from the first value (an empty tensor reads as FP32, the commonest model output)."""
    leaves: list[Any] = []
    _collect_leaves(data, leaves)
    if not leaves:
        return "FP32"
    first = leaves[0]
    if isinstance(first, bool):
        return "BOOL"
    if isinstance(first, str):
        return BYTES
    # One float anywhere makes the tensor floating point, as numpy reads the list.
    if any(isinstance(leaf, float) for leaf in leaves):
        return "FP64"
    return "INT64"


def array_to_json(array: np.ndarray, datatype: str, where: str) -> Any:
    """An array -> a flat, row-major JSON-serialisable value (orjson serialises numpy natively)."""
    if datatype == BYTES:
        return [_text_of(element, where) for element in array.reshape(-1)]
    return np.ascontiguousarray(array).reshape(-1)


def _numbers_from_json(data: Any, dtype: np.dtype[np.generic], where: str) -> np.ndarray:
    try:
        parsed = np.asarray(data)
    except ValueError:
        raise BadRequest(f"{where}: data is a ragged array; nested lists must be rectangular") from None
    parsed = parsed.reshape(-1)
    if parsed.size == 0:
        return parsed.astype(dtype)
    datatype_kind = dtype.kind
    if datatype_kind in "iu" and parsed.dtype.kind in "fO":
        # numpy promotes a mix of int64 and uint64 values to float64 (or object past 2**64), which
        # would lose precision; such requests take the exact, slower path.
        return _exact_integers(data, dtype, where)
    if parsed.dtype.kind not in _ACCEPTED_KINDS[datatype_kind]:
        raise BadRequest(
            f"{where}: datatype {_datatype_name(dtype)} needs {_KIND_NOUN[datatype_kind]}, "
            f"got {_describe(parsed)}"
        )
    if datatype_kind in "iu":
        _check_integer_range(parsed, dtype, where)
    elif datatype_kind == "f" and dtype.itemsize < 8:
        _check_float_range(parsed, dtype, where)
    return parsed.astype(dtype)


def _exact_integers(data: Any, dtype: np.dtype[np.generic], where: str) -> np.ndarray:
    values: list[Any] = []
    _collect_leaves(data, values)
    for value in values:
        if isinstance(value, float) and value.is_integer() and abs(value) >= 2**63:
            # orjson parses integers beyond 64 bits as floats: they were integers, out of any range.
            raise BadRequest(f"{where}: value {value:.0f} is out of range for {_datatype_name(dtype)}")
        if isinstance(value, bool) or not isinstance(value, int):
            shown = f"{value:g}" if isinstance(value, float) else type(value).__name__
            raise BadRequest(f"{where}: datatype {_datatype_name(dtype)} needs integers, got {shown}")
    info = np.iinfo(dtype)  # type: ignore[type-var]
    low, high = min(values), max(values)
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise BadRequest(f"{where}: value {bad} is out of range for {_datatype_name(dtype)}")
    return np.array(values, dtype=dtype)


def _collect_leaves(data: Any, out: list[Any]) -> None:
    if isinstance(data, list):
        for item in data:
            _collect_leaves(item, out)
    else:
        out.append(data)


def _check_integer_range(parsed: np.ndarray, dtype: np.dtype[np.generic], where: str) -> None:
    info = np.iinfo(dtype)  # type: ignore[type-var]
    low, high = parsed.min(), parsed.max()
    if low < info.min or high > info.max:
        bad = low if low < info.min else high
        raise BadRequest(f"{where}: value {bad} is out of range for {_datatype_name(dtype)}")


def _check_float_range(parsed: np.ndarray, dtype: np.dtype[np.generic], where: str) -> None:
    limit = float(np.finfo(dtype).max)  # type: ignore[type-var]
    largest = float(np.abs(parsed).max())
    if largest > limit:
        raise BadRequest(f"{where}: value {largest:g} is out of range for {_datatype_name(dtype)}")


def _bytes_from_json(data: Any, where: str) -> np.ndarray:
    elements: list[bytes] = []
    _collect_strings(data, elements, where)
    out = np.empty(len(elements), dtype=object)
    out[:] = elements
    return out


def _collect_strings(data: Any, out: list[bytes], where: str) -> None:
    if isinstance(data, str):
        out.append(data.encode())
    elif isinstance(data, list):
        for item in data:
            _collect_strings(item, out, where)
    else:
        raise BadRequest(f"{where}: BYTES data must be strings, got {type(data).__name__}")


def _text_of(element: object, where: str) -> str:
    if isinstance(element, str):
        return element
    if isinstance(element, bytes | np.bytes_):
        try:
            return bytes(element).decode()
        except UnicodeDecodeError:
            raise BadRequest(
                f"{where}: holds bytes that are not UTF-8 text; request it with binary_data: true"
            ) from None
    raise ValueError(f"{where}: a BYTES element must be bytes or str, not {type(element).__name__}")


def _datatype_name(dtype: np.dtype[np.generic]) -> str:
    return datatype_of(dtype)


def _describe(parsed: np.ndarray) -> str:
    kind = parsed.dtype.kind
    if kind == "U":
        return "strings"
    if kind == "b":
        return "booleans"
    if kind == "f":
        fractional = parsed[parsed != np.floor(parsed)]
        return f"{fractional[0]:g}" if fractional.size else "floating-point numbers"
    if kind == "O":
        return "nulls, objects or numbers too large"
    return f"{parsed.dtype} values"
