"""Which 5xx answers are a model's error (the request's fault) rather than a server's failure."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config.models.model_errors import ModelErrorsConfig
from routing.resilience.model_errors import DEFAULT_MAX_BODY, ModelErrorPolicy

TORCHSERVE = b'{"code": 503, "type": "InternalServerException", "message": "Prediction failed"}'
KSERVE = b'{"error":"ValueError : X has 3 features, but LogisticRegression is expecting 2"}'
OVERLOADED = b'{"code": 503, "type": "ServiceUnavailableException", "message": "Model has no worker"}'


@pytest.mark.parametrize(
    ("status", "body", "model_error"),
    [
        (503, TORCHSERVE, True),
        (500, KSERVE, True),
        (503, OVERLOADED, False),  # the server cannot take work: an outage, retried elsewhere
        (502, TORCHSERVE, False),  # a status the policy does not cover
        (500, b"Internal Server Error", False),
        (500, b"", False),
    ],
)
def test_the_body_says_whether_the_model_raised(status: int, body: bytes, model_error: bool) -> None:
    assert ModelErrorPolicy().is_model_error(status, body) is model_error


def test_only_small_answers_of_the_listed_statuses_are_held_back() -> None:
    policy = ModelErrorPolicy()
    assert policy.may_be_model_error(503, 80)
    assert not policy.may_be_model_error(503, None), "a chunked answer is not held back"
    assert not policy.may_be_model_error(503, DEFAULT_MAX_BODY + 1)
    assert not policy.may_be_model_error(200, 80)
    assert not policy.is_model_error(503, b"Prediction failed" + b" " * DEFAULT_MAX_BODY)


def test_the_markers_and_statuses_are_configurable() -> None:
    policy = ModelErrorPolicy(statuses=[500], markers=["model raised"])
    assert policy.is_model_error(500, b"the model raised: bad input")
    assert not policy.is_model_error(500, KSERVE)
    assert not policy.is_model_error(503, b"the model raised")
    with pytest.raises(ValueError, match="marker"):
        ModelErrorPolicy(markers=[])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"statuses": [404]}, "only 5xx statuses"),
        ({"statuses": []}, "at least 1"),
        ({"markers": []}, "at least 1"),
        ({"markers": ["x"], "retry": True}, "Extra inputs"),
    ],
)
def test_config_errors_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelErrorsConfig.model_validate(options)
