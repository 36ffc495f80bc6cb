"""The batched OIP v2 decoder agrees with the general one on plain exchanges and leaves every other
body to it."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from plugins.monitor.decode import decode, joined_observations
from plugins.monitor.fast_decode import decode_batch
from tests.monitoring._exchanges import binary_probabilities, oip_request, oip_response


def _exchanges(count: int, shape: tuple[int, int], seed: int = 0) -> list[tuple[bytes, bytes]]:
    rng = np.random.default_rng(seed)
    return [
        (oip_request(rng.normal(size=shape)), oip_response(binary_probabilities(rng, shape[0])))
        for _ in range(count)
    ]


@pytest.mark.parametrize("shape", [(1, 30), (3, 4), (1, 1)])
def test_a_batch_of_one_shape_decodes_as_the_general_decoder_joins_it(shape: tuple[int, int]) -> None:
    exchanges = _exchanges(20, shape)
    groups, left = decode_batch(exchanges)
    assert left == [] and len(groups) == 1
    indexes, fast = groups[0]
    assert indexes == list(range(20))
    general = joined_observations([decode("oip_v2", *exchange, None) for exchange in exchanges])
    assert general is not None and fast.rows is not None and general.rows is not None
    np.testing.assert_array_equal(fast.rows, general.rows)
    assert fast.names == general.names and fast.version == general.version == "1"
    assert [name for name, _ in fast.outputs] == [name for name, _ in general.outputs]
    for (_, mine), (_, theirs) in zip(fast.outputs, general.outputs, strict=True):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape
        np.testing.assert_array_equal(mine, theirs)


def test_several_inputs_are_named_as_the_general_decoder_names_them() -> None:
    rng = np.random.default_rng(1)
    request = orjson.dumps(
        {
            "inputs": [
                {"name": "age", "datatype": "INT32", "shape": [2, 1], "data": [30, 40]},
                {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": rng.random(4).tolist()},
            ]
        }
    )
    exchange = (request, oip_response(binary_probabilities(rng, 2)))
    groups, left = decode_batch([exchange, exchange])
    assert left == [] and len(groups) == 1
    general = decode("oip_v2", *exchange, None)
    fast = groups[0][1]
    assert fast.names == general.names == ("age", "x[0]", "x[1]")
    assert fast.rows is not None and general.rows is not None
    np.testing.assert_array_equal(fast.rows, np.vstack([general.rows, general.rows]))


def test_shapes_and_versions_make_groups_of_their_own() -> None:
    rng = np.random.default_rng(2)
    one = (oip_request(rng.normal(size=(1, 4))), oip_response(binary_probabilities(rng, 1), version="1"))
    two = (oip_request(rng.normal(size=(1, 4))), oip_response(binary_probabilities(rng, 1), version="2"))
    wide = (oip_request(rng.normal(size=(1, 5))), oip_response(binary_probabilities(rng, 1), version="1"))
    groups, left = decode_batch([one, two, wide, one])
    assert left == []
    assert sorted(indexes for indexes, _ in groups) == [[0, 3], [1], [2]]


def _tensor(**changes: Any) -> bytes:
    tensor: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.5]}
    tensor.update(changes)
    return orjson.dumps({"inputs": [tensor]})


@pytest.mark.parametrize(
    "request_body",
    [
        b"{not json",
        b"[1, 2]",
        _tensor(data=[[0.5, 1.5]]),  # nested data
        _tensor(data=["0.5", "1.5"]),  # text in a float tensor
        _tensor(datatype="INT32", data=[1.5, 2.0]),  # a float in an integer tensor
        _tensor(data=[1e39, 0.0]),  # beyond float32
        _tensor(datatype="INT8", data=[1000, 0]),  # beyond int8
        _tensor(data=[0.5]),  # does not fill its shape
        _tensor(datatype="BYTES", data=["a", "b"]),
        _tensor(parameters={"binary_data_size": 8}),
        _tensor(shape=[]),
    ],
)
def test_anything_but_a_plain_exchange_is_left_to_the_general_decoder(request_body: bytes) -> None:
    rng = np.random.default_rng(3)
    plain = (oip_request(rng.normal(size=(1, 2))), oip_response(binary_probabilities(rng, 1)))
    groups, left = decode_batch([plain, (request_body, plain[1])])
    assert left == [1]
    assert [indexes for indexes, _ in groups] == [[0]]


def test_an_unreadable_response_is_left_to_the_general_decoder() -> None:
    rng = np.random.default_rng(4)
    request = oip_request(rng.normal(size=(1, 2)))
    nameless, misnamed = b'{"outputs": []}', b'{"model_name": 3, "outputs": []}'
    groups, left = decode_batch([(request, nameless), (request, misnamed)])
    assert groups == [] and left == [0, 1]
