"""KServe V1 requests merged into one `instances` batch and the `predictions` split back per member.

A V1 request holds its examples along the first axis, either as one array or as named columns of
equal length. Members merge when they have the same columns with the same element kinds and example
shapes. Predictions are cut as JSON values, not arrays, so any prediction shape (numbers, lists,
objects) splits the same way: the answer must hold one prediction per example of the batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from gateway.core import json_bounds
from gateway.core.errors import BadGateway, BadRequest
from gateway.core.protocols.kserve_v1 import V1Instances, V1Request, encode_v1_request, encode_v1_response
from plugins.batching.payload import EncodedBatch, MemberBody, Payload

_JSON_HEADERS = (("content-type", "application/json"),)


class V1BatchFormat:
    """Batches of KServe V1 predict requests."""

    __slots__ = ()

    def prepare(self, request: Any, original: EncodedBatch | None = None) -> Payload:
        if not isinstance(request, V1Request):
            raise TypeError(f"expected a V1Request, got {type(request).__name__}")
        instances = request.instances
        signature: tuple[Any, ...]
        if isinstance(instances, np.ndarray):
            _check_batched(instances, "instances")
            rows = int(instances.shape[0])
            signature = ("kserve_v1", _element_kind(instances), instances.shape[1:])
        else:
            columns = []
            rows = -1
            for name in sorted(instances):
                column = instances[name]
                _check_batched(column, f"input '{name}'")
                rows = int(column.shape[0])
                columns.append((name, _element_kind(column), column.shape[1:]))
            signature = ("kserve_v1", tuple(columns))
        if rows <= 0:
            raise BadRequest("request: there are no examples to predict")
        return Payload(request, rows, signature, self, original)

    def merge(self, payloads: Sequence[Payload], binary: bool = True) -> EncodedBatch:
        batches = [_v1(payload) for payload in payloads]
        first = batches[0]
        merged: V1Instances
        if isinstance(first, np.ndarray):
            merged = _concatenate([batch for batch in batches if isinstance(batch, np.ndarray)])
        else:
            merged = {
                name: _concatenate([batch[name] for batch in batches if isinstance(batch, dict)])
                for name in first
            }
        return EncodedBatch(encode_v1_request(merged), "application/json", {})

    def split(self, headers: Mapping[str, str], body: bytes, payloads: Sequence[Payload]) -> list[MemberBody]:
        try:
            document = json_bounds.loads(body, "the upstream's answer to a batch")
        except orjson.JSONDecodeError as exc:
            raise BadGateway(f"the upstream's answer to a batch is not JSON: {exc}") from None
        except json_bounds.JsonTooComplex as exc:
            raise BadGateway(exc.message) from None
        predictions = document.get("predictions") if isinstance(document, dict) else None
        total = sum(payload.rows for payload in payloads)
        if not isinstance(predictions, list) or len(predictions) != total:
            found = (
                f"{len(predictions)} predictions"
                if isinstance(predictions, list)
                else "no 'predictions' list"
            )
            raise BadGateway(f"the upstream answered a batch of {total} examples with {found}")
        members: list[MemberBody] = []
        start = 0
        for payload in payloads:
            end = start + payload.rows
            members.append(MemberBody(_JSON_HEADERS, encode_v1_response(predictions[start:end])))
            start = end
        return members


def _check_batched(array: np.ndarray, where: str) -> None:
    if array.ndim == 0:
        raise BadRequest(f"{where}: a single value has no batch dimension; send a list of examples")


def _element_kind(array: np.ndarray) -> str:
    """The dtype as a signature: strings of any length are one kind, since they concatenate freely."""
    return array.dtype.kind if array.dtype.kind in "US" else array.dtype.str


def _v1(payload: Payload) -> V1Instances:
    request = payload.request
    if not isinstance(request, V1Request):
        raise TypeError("a KServe V1 batch holds only V1Requests")
    return request.instances


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
