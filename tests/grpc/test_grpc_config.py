"""The config fields of the gRPC front door: listen.grpc_port and the grpc_service/grpc_method match."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.config.models.listen import ListenConfig
from gateway.config.models.match import MatchConfig


@pytest.mark.parametrize(
    ("given", "path", "prefix", "regex"),
    [
        (
            {"grpc_service": "inference.GRPCInferenceService", "grpc_method": "ModelInfer"},
            "/inference.GRPCInferenceService/ModelInfer",
            None,
            None,
        ),
        ({"grpc_service": "test.Echo"}, None, "/test.Echo/", None),
        ({"grpc_method": "Check"}, None, None, "^/[^/]+/Check$"),
        # a config dumped and loaded again (turnout keeps both forms) is the same match
        ({"grpc_service": "test.Echo", "prefix": "/test.Echo/"}, None, "/test.Echo/", None),
    ],
)
def test_grpc_names_stand_for_the_call_path(
    given: dict[str, Any], path: str | None, prefix: str | None, regex: str | None
) -> None:
    match = MatchConfig.model_validate(given)
    assert (match.path, match.prefix, match.regex.pattern if match.regex else None) == (path, prefix, regex)


@pytest.mark.parametrize(
    "given",
    [
        {"grpc_service": "test.Echo", "path": "/other"},
        {"grpc_method": "Check", "prefix": "/v2/"},
        {"grpc_service": "not a name"},
        {"grpc_method": "a/b"},
    ],
)
def test_grpc_names_with_another_path_or_malformed_are_refused(given: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MatchConfig.model_validate(given)


def test_the_grpc_port_is_optional_and_apart_from_the_http_port() -> None:
    assert ListenConfig().grpc_port is None
    assert ListenConfig.model_validate({"port": 8080, "grpc_port": 8081}).grpc_port == 8081
    with pytest.raises(ValidationError, match="must differ"):
        ListenConfig.model_validate({"port": 8080, "grpc_port": 8080})
    with pytest.raises(ValidationError):
        ListenConfig.model_validate({"grpc_port": 70000})
