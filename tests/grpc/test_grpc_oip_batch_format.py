"""The protobuf batch format alone: which ModelInfer calls merge, and how answers split by rows."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from gateway.core.errors import BadGateway
from gateway.grpc.oip_batch_format import GrpcBatchFormat, GrpcInfer, mergeable
from inference_workers.grpc_codec import pb
from plugins.batching.payload import Payload

FORMAT = GrpcBatchFormat()


def _request(rows: np.ndarray, request_id: str, **parameters: int) -> Any:
    message = pb.ModelInferRequest(model_name="m", model_version="1", id=request_id)
    message.inputs.add(name="x", datatype="FP32", shape=list(rows.shape))
    message.raw_input_contents.append(rows.astype(np.float32).tobytes())
    for key, value in parameters.items():
        message.parameters[key].int64_param = value
    message.outputs.add(name="y")
    return message


def _payload(message: Any) -> Payload:
    member = mergeable(message)
    assert isinstance(member, GrpcInfer)
    return FORMAT.prepare(member)


def _bytes_elements(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def test_members_merge_along_dim_0_and_the_answer_splits_back_with_each_id() -> None:
    parts: list[np.ndarray] = [
        np.arange(2, dtype=np.float32).reshape(1, 2),
        np.arange(4, 8).reshape(2, 2),
        np.ones((1, 2)),
    ]
    payloads = [_payload(_request(rows, f"id-{i}")) for i, rows in enumerate(parts)]
    assert len({payload.signature for payload in payloads}) == 1
    assert [payload.rows for payload in payloads] == [1, 2, 1]

    merged = pb.ModelInferRequest.FromString(FORMAT.merge(payloads).body)
    assert list(merged.inputs[0].shape) == [4, 2] and merged.id == ""
    whole = np.concatenate([rows.astype(np.float32) for rows in parts])
    assert merged.raw_input_contents[0] == whole.tobytes()
    assert [output.name for output in merged.outputs] == ["y"]

    answer = pb.ModelInferResponse(model_name="m", model_version="1", id="batch")
    answer.outputs.add(name="y", datatype="INT64", shape=[4, 3])
    answer.outputs.add(name="flat", datatype="FP32", shape=[8])  # two values a row, flattened
    answer.outputs.add(name="text", datatype="BYTES", shape=[4])
    answer.raw_output_contents.append(np.arange(12, dtype=np.int64).tobytes())
    answer.raw_output_contents.append(np.arange(8, dtype=np.float32).tobytes())
    answer.raw_output_contents.append(_bytes_elements(b"a", b"bb", b"", b"dddd"))
    shares = [
        pb.ModelInferResponse.FromString(share.body)
        for share in FORMAT.split({}, answer.SerializeToString(), payloads)
    ]

    assert [share.id for share in shares] == ["id-0", "id-1", "id-2"]
    assert [list(share.outputs[0].shape) for share in shares] == [[1, 3], [2, 3], [1, 3]]
    assert [list(share.outputs[1].shape) for share in shares] == [[2], [4], [2]]
    assert np.frombuffer(shares[1].raw_output_contents[0], np.int64).tolist() == [3, 4, 5, 6, 7, 8]
    assert np.frombuffer(shares[2].raw_output_contents[1], np.float32).tolist() == [6.0, 7.0]
    assert shares[1].raw_output_contents[2] == _bytes_elements(b"bb", b"")


def test_typed_answers_split_by_values() -> None:
    payloads = [_payload(_request(np.zeros((rows, 2)), "")) for rows in (2, 1)]
    answer = pb.ModelInferResponse(model_name="m", id="upstream")
    answer.outputs.add(name="y", datatype="FP32", shape=[3, 2]).contents.fp32_contents.extend(range(6))
    shares = [
        pb.ModelInferResponse.FromString(share.body)
        for share in FORMAT.split({}, answer.SerializeToString(), payloads)
    ]
    assert [list(share.outputs[0].contents.fp32_contents) for share in shares] == [[0, 1, 2, 3], [4, 5]]
    assert [share.id for share in shares] == ["upstream", "upstream"]  # a member without an id


def test_an_answer_without_the_batch_rows_is_a_bad_gateway() -> None:
    payloads = [_payload(_request(np.zeros((1, 2)), "")) for _ in range(3)]
    answer = pb.ModelInferResponse(model_name="m")
    answer.outputs.add(name="y", datatype="FP32", shape=[2, 2])
    answer.raw_output_contents.append(np.zeros(4, np.float32).tobytes())
    with pytest.raises(BadGateway, match="cannot be split by rows"):
        FORMAT.split({}, answer.SerializeToString(), payloads)


def test_what_cannot_be_merged_goes_alone_and_what_differs_shares_no_batch() -> None:
    typed = pb.ModelInferRequest(model_name="m")
    typed.inputs.add(name="x", datatype="FP32", shape=[1, 2]).contents.fp32_contents.extend([1, 2])
    short = _request(np.zeros((2, 2)), "")
    short.raw_input_contents[0] = short.raw_input_contents[0][:-4]
    disagreeing = _request(np.zeros((2, 2)), "")
    disagreeing.inputs.add(name="z", datatype="FP32", shape=[3])
    disagreeing.raw_input_contents.append(np.zeros(3, np.float32).tobytes())
    for message in (typed, short, disagreeing, pb.ModelInferRequest(model_name="m")):
        assert mergeable(message) is None

    base = _payload(_request(np.zeros((1, 2)), "")).signature
    assert _payload(_request(np.zeros((5, 2)), "other id")).signature == base
    assert _payload(_request(np.zeros((1, 3)), "")).signature != base
    assert _payload(_request(np.zeros((1, 2)), "", top_k=3)).signature != base
