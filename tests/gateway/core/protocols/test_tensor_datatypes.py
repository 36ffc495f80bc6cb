"""Protocol datatypes <-> numpy dtypes."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.core.errors import BadRequest
from gateway.core.protocols.datatypes import DATATYPES, datatype_of, element_count, numpy_dtype


@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_every_datatype_maps_to_a_dtype_and_back(datatype: str) -> None:
    assert datatype_of(numpy_dtype(datatype, "x")) == datatype


def test_fixed_size_dtypes_are_little_endian() -> None:
    for datatype in DATATYPES - {"BOOL", "INT8", "UINT8", "BYTES"}:
        assert numpy_dtype(datatype, "x").byteorder in ("<", "=") and numpy_dtype(datatype, "x").str[0] == "<"


def test_strings_are_bytes_and_unknown_dtypes_are_refused() -> None:
    assert datatype_of(np.dtype("U3")) == "BYTES"
    assert datatype_of(np.dtype("S3")) == "BYTES"
    with pytest.raises(ValueError, match="complex64"):
        datatype_of(np.dtype(np.complex64))


def test_unsupported_datatypes_name_the_tensor() -> None:
    with pytest.raises(BadRequest) as caught:
        numpy_dtype("BF16", "input 'x'")
    assert caught.value.message.startswith("input 'x': unsupported datatype 'BF16'; use one of BOOL, BYTES")


def test_element_count() -> None:
    assert element_count(()) == 1
    assert element_count((2, 0, 3)) == 0
    assert element_count((2, 3)) == 6
