"""Open Inference Protocol tensor datatypes and their numpy counterparts.

Every fixed-size datatype maps to an explicitly little-endian numpy dtype, because the binary tensor
extension and gRPC's raw contents are little-endian on the wire whatever the host is. BYTES tensors
are numpy object arrays whose elements are `bytes`. BF16 is part of the protocol but numpy has no
such type, so it is refused with a message rather than silently widened.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np

from gateway.core.errors import BadRequest

BOOL: Final = "BOOL"
INT8: Final = "INT8"
INT16: Final = "INT16"
INT32: Final = "INT32"
INT64: Final = "INT64"
UINT8: Final = "UINT8"
UINT16: Final = "UINT16"
UINT32: Final = "UINT32"
UINT64: Final = "UINT64"
FP16: Final = "FP16"
FP32: Final = "FP32"
FP64: Final = "FP64"
BYTES: Final = "BYTES"

NUMPY_DTYPES: Final[dict[str, np.dtype[np.generic]]] = {
    BOOL: np.dtype("?"),
    INT8: np.dtype("i1"),
    INT16: np.dtype("<i2"),
    INT32: np.dtype("<i4"),
    INT64: np.dtype("<i8"),
    UINT8: np.dtype("u1"),
    UINT16: np.dtype("<u2"),
    UINT32: np.dtype("<u4"),
    UINT64: np.dtype("<u8"),
    FP16: np.dtype("<f2"),
    FP32: np.dtype("<f4"),
    FP64: np.dtype("<f8"),
    BYTES: np.dtype(object),
}
"""Datatype name -> the numpy dtype its tensors are held in."""

DATATYPES: Final = frozenset(NUMPY_DTYPES)

_BY_KIND_AND_SIZE: Final[dict[tuple[str, int], str]] = {
    (dtype.kind, dtype.itemsize): name for name, dtype in NUMPY_DTYPES.items() if name != BYTES
}


def numpy_dtype(datatype: str, where: str) -> np.dtype[np.generic]:
    """The numpy dtype for a protocol datatype; `where` names the tensor in the error message."""
    dtype = NUMPY_DTYPES.get(datatype)
    if dtype is None:
        raise BadRequest(
            f"{where}: unsupported datatype {datatype!r}; use one of {', '.join(sorted(DATATYPES))}"
        )
    return dtype


def datatype_of(dtype: np.dtype[np.generic]) -> str:
    """The protocol datatype for a numpy dtype (strings and objects are BYTES)."""
    if dtype.kind in "OSU":
        return BYTES
    name = _BY_KIND_AND_SIZE.get((dtype.kind, dtype.itemsize))
    if name is None:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype")
    return name


def element_count(shape: Sequence[int]) -> int:
    """How many elements a tensor of this shape holds (1 for a scalar shape [])."""
    return math.prod(shape)


def format_shape(shape: Sequence[int]) -> str:
    """A shape as the caller wrote it, `[2, 30]`, for error messages."""
    return "[" + ", ".join(str(dim) for dim in shape) + "]"
