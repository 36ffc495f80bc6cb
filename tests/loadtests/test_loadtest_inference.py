"""Dataset rows, request bodies, and the check of answers against the demo models' contract."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from loadtests.inference import (
    DIABETES,
    RISK,
    Output,
    contract_problem,
    dataset_rows,
    rest_body,
    rest_outputs,
)


def risk_answer(
    rows: int, probabilities: list[list[float]] | None = None, labels: list[int] | None = None
) -> bytes:
    probabilities = probabilities if probabilities is not None else [[0.25, 0.75]] * rows
    labels = labels if labels is not None else [1] * rows
    return orjson.dumps(
        {
            "model_name": "risk",
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": [len(probabilities), 2],
                    "data": [v for row in probabilities for v in row],
                },
                {"name": "label", "datatype": "INT64", "shape": [len(labels)], "data": labels},
            ],
        }
    )


def test_rows_are_the_real_datasets() -> None:
    risk, diabetes = dataset_rows(RISK), dataset_rows(DIABETES)
    assert (len(risk), len(risk[0])) == (569, 30)
    assert (len(diabetes), len(diabetes[0])) == (442, 10)
    # The first breast-cancer patient, as in scikit-learn's copy of the dataset.
    assert risk[0][:3] == [17.99, 10.38, 122.8]


def test_request_bodies_are_oip_v2_json() -> None:
    body = orjson.loads(rest_body([[1.0, 2.0], [3.0, 4.0]]))
    assert body == {
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [2, 2], "data": [1.0, 2.0, 3.0, 4.0]}]
    }


def test_a_good_answer_passes() -> None:
    assert contract_problem(RISK, rest_outputs(risk_answer(2)), rows=2) is None
    value = {"name": "value", "datatype": "FP32", "shape": [1], "data": [151.0]}
    assert contract_problem(DIABETES, rest_outputs(orjson.dumps({"outputs": [value]})), rows=1) is None


@pytest.mark.parametrize(
    ("answer", "rows", "message"),
    [
        (risk_answer(2), 3, "probabilities: shape [2, 2], expected [3, 2]"),
        (risk_answer(1, probabilities=[[0.5, 0.6]]), 1, "rows do not sum to 1"),
        (risk_answer(1, labels=[2]), 1, "label: classes outside 0..1"),
        (risk_answer(1, labels=[0, 1]), 1, "label: shape [2], expected [1]"),
    ],
)
def test_broken_answers_are_named(answer: bytes, rows: int, message: str) -> None:
    problem = contract_problem(RISK, rest_outputs(answer), rows)
    assert problem is not None and message in problem


def test_missing_or_mistyped_outputs_are_named() -> None:
    only_label = {"label": Output("INT64", (1,), np.array([1]))}
    assert "expected ['label', 'probabilities']" in (contract_problem(RISK, only_label, 1) or "")
    wrong_type = {"value": Output("FP64", (1,), np.array([1.0]))}
    assert contract_problem(DIABETES, wrong_type, 1) == "value: datatype FP64, expected FP32"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"outputs": [{"name": "x"}]}'])
def test_bodies_that_are_not_answers_raise(body: bytes) -> None:
    with pytest.raises(ValueError, match="not an OIP v2 inference answer"):
        rest_outputs(body)
