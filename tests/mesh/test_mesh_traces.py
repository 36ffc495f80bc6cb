"""Traces of mesh requests: an ext_proc request (headers to answer) is a server span continuing the
traceparent Envoy forwards, with its filter phases, arm assignment and endpoint pick as children."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from tests.mesh.mesh_support import mesh_config, request_headers, response_headers
from tests.mesh.test_mesh_ext_proc import exchange
from tests.mesh.test_mesh_ext_proc_answers import answer_head, grpc_request
from tests.mesh.test_mesh_ext_proc_sequences import response_trailers
from tests.tracing.otlp_receiver import SERVER, ReceivedSpan, otlp_receiver


def traceparent(trace_id: str, parent: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{parent}-{'01' if sampled else '00'}"


def tree(spans: list[ReceivedSpan], trace_id: str) -> tuple[ReceivedSpan, list[str]]:
    """The trace's server span and its children's names."""
    (server,) = [s for s in spans if s.trace_id == trace_id and s.kind == SERVER]
    return server, sorted(s.name for s in spans if s.parent_id == server.span_id and s.trace_id == trace_id)


async def test_ext_proc_requests_are_traced_under_envoys_traceparent(
    make_gateway: Any, tmp_path: Path
) -> None:
    async with otlp_receiver() as receiver:
        config = mesh_config(tmp_path)
        config["tracing"] = {"enabled": True, "sampling_ratio": 1.0, "endpoint": receiver.endpoint}
        async with make_gateway(config) as gateway:
            port = gateway.mesh.port
            limited, ab, refused, grpc_call, unsampled = (secrets.token_hex(16) for _ in range(5))
            parent = secrets.token_hex(8)
            await exchange(
                port,
                [
                    request_headers(
                        "/limited/v2/models/x/infer",
                        [("x-api-key", "k1"), ("traceparent", traceparent(limited, parent))],
                    ),
                    response_headers(200),
                ],
            )
            await exchange(
                port,
                [
                    request_headers("/x", [("x-user-id", "u1"), ("traceparent", traceparent(ab, parent))]),
                    response_headers(503),
                ],
            )
            await exchange(
                port,
                [request_headers("/limited/x", [("traceparent", traceparent(refused, parent))])],
            )
            call = grpc_request("r-traced")
            call.request_headers.headers.headers.add(
                key="traceparent", raw_value=traceparent(grpc_call, parent).encode()
            )
            await exchange(
                port,
                [call, answer_head(), response_trailers([("grpc-status", "13"), ("grpc-message", "boom")])],
            )
            await exchange(
                port,
                [
                    request_headers(
                        "/x", [("x-user-id", "u2"), ("traceparent", traceparent(unsampled, parent, False))]
                    )
                ],
            )

            def complete(spans: list[ReceivedSpan]) -> bool:
                servers = {s.trace_id for s in spans if s.kind == SERVER}
                return {limited, ab, refused, grpc_call} <= servers

            spans = await receiver.wait_for(complete)

        # The key check and the limit, then the endpoint, then the answer's phase: under the request.
        server, children = tree(spans, limited)
        assert server.parent_id == parent  # continues Envoy's traceparent
        assert server.name == "POST limited"
        assert server.attributes["http.response.status_code"] == 200
        assert server.attributes["turnout.endpoint"] in ("127.0.0.1:9", "127.0.0.2:9")
        assert children == [
            "endpoint pick",
            "filter auth_apikey request",
            "filter rate_limit request",
            "filter rate_limit response",  # its limit headers on the answer
        ]
        # An experiment route: the arm assignment; the upstream's 503 puts the span in error.
        server, children = tree(spans, ab)
        assert children == ["endpoint pick", "experiment assignment"]
        assert server.error and server.attributes["http.response.status_code"] == 503
        assert server.attributes["turnout.arm"] in ("control", "treatment")
        # Refused by a filter: the span ends with the refusal, and no endpoint was picked.
        server, children = tree(spans, refused)
        assert children == ["filter auth_apikey request"]
        assert server.attributes["http.response.status_code"] == 401
        # A gRPC answer: the span ends at its trailers, with the status its grpc-status maps to.
        server, _ = tree(spans, grpc_call)
        assert server.attributes["http.response.status_code"] == 500  # INTERNAL
        assert server.error
        # The client's unsampled flag decides: nothing recorded.
        assert not [s for s in spans if s.trace_id == unsampled]
