"""The model name and version read from OIP v2 request messages, as the generated code writes them."""

from __future__ import annotations

import contextlib
import random

import pytest

from gateway.core.errors import BadRequest
from gateway.grpc.message_fields import model_fields
from inference_workers.grpc_codec import pb


def _tensor_request(model: str, version: str) -> bytes:
    request = pb.ModelInferRequest(model_name=model, model_version=version, id="x" * 300)
    tensor = request.inputs.add(name="features", datatype="FP32", shape=[4, 30])
    tensor.parameters["binary_data_size"].int64_param = 480
    request.parameters["priority"].int64_param = 7
    request.raw_input_contents.append(bytes(range(256)) * 2)
    request.outputs.add(name="probabilities")
    return bytes(request.SerializeToString())


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (_tensor_request("risk", "2"), ("risk", "2")),
        (_tensor_request("risk", ""), ("risk", None)),
        (_tensor_request("", ""), (None, None)),
        (pb.ModelMetadataRequest(name="モデル", version="7").SerializeToString(), ("モデル", "7")),
        (pb.ModelReadyRequest(name="r").SerializeToString(), ("r", None)),
        # A name of more than 127 bytes: its length is a varint of two bytes.
        (pb.ModelReadyRequest(name="m" * 200, version="1").SerializeToString(), ("m" * 200, "1")),
        (b"", (None, None)),
    ],
)
def test_name_and_version_are_read_without_decoding_the_rest(
    message: bytes, expected: tuple[str | None, str | None]
) -> None:
    assert model_fields(message) == expected


def test_fields_in_any_order_and_other_wire_types_are_skipped() -> None:
    # field 4 as a varint, field 6 fixed64, field 7 fixed32, then version before name
    message = b"\x20\x96\x01" + b"\x31" + b"\x00" * 8 + b"\x3d" + b"\x00" * 4 + b"\x12\x01v" + b"\x0a\x02nm"
    assert model_fields(message) == ("nm", "v")


@pytest.mark.parametrize(
    "message",
    [
        b"\x0a\x05ab",  # a string longer than what is left
        b"\x0a",  # a key without its length
        b"\x08" + b"\xff" * 11,  # a varint longer than ten bytes
        b"\x0b",  # wire type 3 (a group)
        b"\x0a\x02\xff\xfe",  # a name that is not UTF-8
        b"\x02\x00",  # field number 0
        b"\x09\x00",  # a fixed64 cut short
    ],
)
def test_malformed_messages_are_bad_requests(message: bytes) -> None:
    with pytest.raises(BadRequest):
        model_fields(message)


def test_random_bytes_never_raise_anything_but_bad_request() -> None:
    generator = random.Random(16)
    for _ in range(2000):
        data = bytes(generator.randrange(256) for _ in range(generator.randrange(1, 40)))
        with contextlib.suppress(BadRequest):  # any other exception fails the test
            model_fields(data)
