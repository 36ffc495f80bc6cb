from __future__ import annotations

import pytest

from routing.model_path import model_from_path


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/fraud/infer", ("fraud", None)),
        ("/v2/models/fraud", ("fraud", None)),
        ("/v2/models/fraud/ready", ("fraud", None)),
        ("/v2/models/fraud/versions/3/infer", ("fraud", "3")),
        ("/v2/models/fraud/versions/3", ("fraud", "3")),
        ("/v2/models/fraud/versions/", ("fraud", None)),
        ("/v1/models/fraud:predict", ("fraud", None)),
        ("/v1/models/fraud:explain", ("fraud", None)),
        ("/v1/models/fraud", ("fraud", None)),
        ("/v1/models/fraud/versions/2:predict", ("fraud", "2")),
        ("/v1/models/fraud/versions/2", ("fraud", "2")),
        ("/v2/models/", (None, None)),
        ("/v2/models", (None, None)),
        ("/v1/models/:predict", (None, None)),
        ("/v2/health/ready", (None, None)),
        ("/openai/v1/chat/completions", (None, None)),
        ("/", (None, None)),
    ],
)
def test_model_from_path(path: str, expected: tuple[str | None, str | None]) -> None:
    assert model_from_path(path) == expected
