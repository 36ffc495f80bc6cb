"""Configs and gRPC clients that play Envoy's part against turnout's mesh server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc_pb2

from tests.support.processes import free_port

# printf %s k1 | sha256sum
KEY_K1_SHA256 = "6ab9f1eb8f7d3388f4f9d586f66e99fd54080df2c446f0e58668b09c08a16dd0"
# Endpoints nobody listens on: ext_proc only names them, Envoy would connect.
V1_ENDPOINTS = ["127.0.0.1:9", "127.0.0.2:9"]
V2_ENDPOINTS = ["127.0.0.3:9"]


def mesh_config(tmp_path: Path, **mesh: Any) -> dict[str, Any]:
    """A gateway with a key-and-limit route, an A/B route and a body-reading route, and a mesh port."""
    keys = {"keys": [{"sha256": KEY_K1_SHA256, "principal": "alice", "tenant": "acme", "scopes": ["infer"]}]}
    return {
        "listen": {"host": "127.0.0.1", "port": free_port()},
        "admin": {"host": "127.0.0.1", "port": free_port()},
        "access_log": {"enabled": False},
        "state": {"backend": "memory", "sqlite_path": str(tmp_path / "events.db")},
        "clusters": {"risk-v1": {"endpoints": V1_ENDPOINTS}, "risk-v2": {"endpoints": V2_ENDPOINTS}},
        "experiments": {
            "risk-ab": {
                "kind": "ab",
                "unit": ["header:x-user-id"],
                "arms": {
                    "control": {"cluster": "risk-v1", "weight": 50},
                    "treatment": {"cluster": "risk-v2", "weight": 50},
                },
            }
        },
        "routes": [
            {
                "name": "limited",
                "match": {"prefix": "/limited/"},
                "rewrite": {"prefix": "/"},
                "backend": {"cluster": "risk-v1"},
                "filters": [
                    {"auth_apikey": keys},
                    {"rate_limit": {"limits": [{"key": "principal", "rate": "3/min", "burst": 3}]}},
                ],
            },
            {
                "name": "checked",
                "match": {"prefix": "/v2/models/checked/"},
                "backend": {"cluster": "risk-v1"},
                "filters": [{"validate": {"oip_v2": True, "metadata_from": "http://127.0.0.1:9"}}],
            },
            {"name": "risk", "match": {"prefix": "/"}, "backend": {"experiment": "risk-ab"}},
        ],
        "mesh": {"host": "127.0.0.1", "port": free_port(), **mesh},
    }


def headers(pairs: list[tuple[str, str]]) -> Any:
    return base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs])


def request_headers(path: str, extra: list[tuple[str, str]] = (), *, end_of_stream: bool = True) -> Any:  # type: ignore[assignment]
    pairs = [(":method", "POST"), (":path", path), (":authority", "mesh.test"), (":scheme", "http"), *extra]
    return ext_proc_pb2.ProcessingRequest(
        request_headers=ext_proc_pb2.HttpHeaders(headers=headers(pairs), end_of_stream=end_of_stream)
    )


def request_body(body: bytes, *, end_of_stream: bool) -> Any:
    return ext_proc_pb2.ProcessingRequest(
        request_body=ext_proc_pb2.HttpBody(body=body, end_of_stream=end_of_stream)
    )


def response_headers(status: int, extra: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]
    pairs = [(":status", str(status)), ("content-type", "application/json"), *extra]
    return ext_proc_pb2.ProcessingRequest(response_headers=ext_proc_pb2.HttpHeaders(headers=headers(pairs)))


def mutation_headers(common: Any) -> dict[str, str]:
    return {h.header.key: h.header.raw_value.decode() for h in common.header_mutation.set_headers}
