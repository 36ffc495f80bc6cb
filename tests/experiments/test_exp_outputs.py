"""Summaries of OIP v2 outputs: labels, argmax classes, scores; bad bodies give nothing."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from experiments.outputs import output_metric_names, summarize_outputs


def body(*outputs: Mapping[str, object]) -> bytes:
    return orjson.dumps({"model_name": "risk", "outputs": list(outputs)})


def test_probabilities_give_the_argmax_class_and_top_score() -> None:
    probs = {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [2, 3],
        "data": [0.1, 0.7, 0.2, 0.5, 0.3, 0.2],
    }
    (summary,) = summarize_outputs(body(probs), ["probabilities"])
    assert summary.labels == ("1", "0")
    assert summary.score is not None and abs(summary.score - 0.6) < 1e-6


def test_label_outputs_as_integers_or_strings() -> None:
    ints = {"name": "label", "datatype": "INT64", "shape": [3], "data": [1, 0, 1]}
    texts = {"name": "kind", "datatype": "BYTES", "shape": [2], "data": ["cat", "dog"]}
    label, kind = summarize_outputs(body(ints, texts), ["label", "kind"])
    assert label.labels == ("1", "0", "1") and label.score is None
    assert kind.labels == ("cat", "dog")


def test_a_numeric_output_with_one_value_per_row_is_a_score() -> None:
    score = {"name": "score", "datatype": "FP64", "shape": [2, 1], "data": [0.25, 0.75]}
    (summary,) = summarize_outputs(body(score), ["score"])
    assert summary.labels == () and summary.score == 0.5


def test_missing_outputs_and_bad_bodies_give_nothing() -> None:
    score = {"name": "score", "datatype": "FP64", "shape": [1], "data": [1.0]}
    assert summarize_outputs(body(score), ["other"]) == ()
    assert summarize_outputs(b"not json", ["score"]) == ()
    assert summarize_outputs(b'{"error": "boom"}', ["score"]) == ()
    assert summarize_outputs(body(score), []) == ()


def test_output_metric_names() -> None:
    assert output_metric_names(["latency", "output:label", "feedback:x", "output:score"]) == (
        "label",
        "score",
    )
