"""Batching against what real servers do: flat outputs, answers without the member's id, servers
without the binary tensor extension (read from GET /v2, read again after a failure)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from gateway.core.errors import BadGateway, ServiceUnavailable
from gateway.core.protocols.oip_v2 import InferRequest, Tensor, decode_response
from plugins.batching.extensions import ServerExtensions
from plugins.batching.oip_format import OipBatchFormat

BINARY = OipBatchFormat(binary_tensors=True)


def member(rows: int, request_id: str | None = None) -> InferRequest:
    return InferRequest([Tensor("x", "FP64", np.ones((rows, 2)))], id=request_id)


def answer(outputs: list[dict[str, object]], **extra: object) -> bytes:
    return orjson.dumps({"model_name": "m", "outputs": outputs, **extra})


def test_a_flat_output_is_cut_by_its_values_per_row() -> None:
    payloads = [BINARY.prepare(member(1, "a")), BINARY.prepare(member(2))]
    flat = {"name": "predict", "shape": [6], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}
    column = {"name": "label", "shape": [3], "datatype": "INT64", "data": [7, 8, 9], "parameters": None}
    shares = BINARY.split({}, answer([flat, column], id="batch-1", parameters=None), payloads)
    first, second = (decode_response(share.body) for share in shares)
    assert first.outputs[0].data.tolist() == [1, 2] and second.outputs[0].data.tolist() == [3, 4, 5, 6]
    assert first.outputs[1].data.tolist() == [7] and second.outputs[1].data.tolist() == [8, 9]
    assert first.id == "a", "a member's own id"
    assert second.id == "batch-1", "a member without one gets the server's, as it would directly"


@pytest.mark.parametrize("shape", [[5], [2, 3]])
def test_an_output_that_is_no_whole_number_of_values_per_row_is_refused(shape: list[int]) -> None:
    payloads = [BINARY.prepare(member(1)), BINARY.prepare(member(2))]
    size = int(np.prod(shape))
    output = {"name": "y", "shape": shape, "datatype": "FP64", "data": [0.0] * size}
    with pytest.raises(BadGateway, match="cannot be split by rows"):
        BINARY.split({}, answer([output]), payloads)


def test_a_merged_batch_stays_json_where_binary_is_not_taken() -> None:
    payloads = [BINARY.prepare(member(1)), BINARY.prepare(member(1))]
    assert BINARY.merge(payloads).headers, "binary where the server takes it"
    json_batch = BINARY.merge(payloads, binary=False)
    assert json_batch.headers == {} and json_batch.content_type == "application/json"
    assert orjson.loads(json_batch.body)["inputs"][0]["data"] == [1.0, 1.0, 1.0, 1.0]


class FakeServer:
    """Answers GET /v2 as told and counts the calls (a unit test of the reading, no socket)."""

    def __init__(self, status: int, document: object) -> None:
        self.status, self.document, self.calls = status, document, 0

    async def get(self, path: str) -> tuple[int, bytes]:
        assert path == "/v2"
        self.calls += 1
        if self.status == 0:
            raise ServiceUnavailable("no endpoint")
        return self.status, orjson.dumps(self.document)


@pytest.mark.parametrize(
    ("status", "document", "binary"),
    [
        (200, {"name": "triton", "extensions": ["binary_tensor_data", "statistics"]}, True),
        (200, {"name": "mlserver", "version": "1.7.1", "extensions": []}, False),
        (200, {"name": "kserve", "extensions": ["model_repository_extension"]}, False),
        (200, {"name": "odd"}, False),
        (200, ["not", "an", "object"], False),
        (404, {"code": 404}, False),
        (0, None, False),
    ],
)
async def test_binary_only_where_the_server_lists_the_extension(
    status: int, document: object, binary: bool
) -> None:
    server = FakeServer(status, document)
    extensions = ServerExtensions(server.get)
    assert await extensions.binary() is binary
    assert await extensions.binary() is binary
    assert server.calls == 1, "read once (an unreadable answer is asked again only after a pause)"


async def test_the_extensions_are_read_again_after_a_failed_binary_batch() -> None:
    server = FakeServer(200, {"extensions": ["binary_tensor_data"]})
    extensions = ServerExtensions(server.get)
    assert await extensions.binary()
    server.document = {"extensions": []}  # the cluster now holds a server without it
    extensions.forget()
    assert not await extensions.binary()
    assert server.calls == 2
