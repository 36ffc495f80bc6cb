"""scikit-learn backend: a fitted estimator (or pipeline) saved with joblib.

The model takes one input, the feature matrix. Each output is one estimator method applied to it,
named in `options.methods` (default `predict`), e.g. `{probabilities: predict_proba, label: predict}`;
a method shared by two outputs runs once. Results are cast to the output's configured datatype.
scikit-learn runs on the CPU: a model with `device: auto` stays there on a GPU worker.
joblib files are pickles: load them only from a model repository you trust.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import joblib
import numpy as np
from pydantic import Field

from gateway.core.config_types import StrictModel
from gateway.core.protocols.datatypes import numpy_dtype
from inference_workers.backends.base import ModelLoadError, ModelSource, parse_options, require_artifact

Method = Literal["predict", "predict_proba", "predict_log_proba", "decision_function", "transform"]


class SklearnOptions(StrictModel):
    methods: dict[str, Method] = Field(default_factory=dict)
    """Output name -> the estimator method that computes it; outputs not named use `predict`."""


class SklearnBackend:
    __slots__ = ("_dtypes", "_estimator", "_input", "_methods")

    def __init__(
        self, estimator: Any, input_name: str, methods: dict[str, str], dtypes: dict[str, np.dtype[Any]]
    ) -> None:
        self._estimator = estimator
        self._input = input_name
        self._methods = methods
        self._dtypes = dtypes

    @classmethod
    def load(cls, source: ModelSource) -> SklearnBackend:
        options = parse_options(source, SklearnOptions)
        config = source.config
        if len(config.inputs) != 1:
            raise ModelLoadError(
                f"{source.label}: the sklearn backend takes exactly one input (the features)"
            )
        if source.device.kind != "cpu" and config.device != "auto":
            # On a GPU worker, `device: auto` models of this backend simply stay on the CPU.
            raise ModelLoadError(f"{source.label}: scikit-learn runs on the CPU only; set device: cpu")
        output_names = {spec.name for spec in config.outputs}
        unknown = sorted(set(options.methods) - output_names)
        if unknown:
            raise ModelLoadError(f"{source.label}: options.methods names unknown outputs {unknown}")
        path = require_artifact(source)
        try:
            estimator = joblib.load(path)
        except Exception as exc:  # unpickling can raise anything the pickled classes raise
            raise ModelLoadError(f"{source.label}: cannot load {path.name}: {exc}") from None
        methods: dict[str, str] = {
            spec.name: options.methods.get(spec.name, "predict") for spec in config.outputs
        }
        for output, method in methods.items():
            if not callable(getattr(estimator, method, None)):
                raise ModelLoadError(
                    f"{source.label}: output '{output}' uses {method}, which {type(estimator).__name__} lacks"
                )
        dtypes = {spec.name: numpy_dtype(spec.datatype, f"output '{spec.name}'") for spec in config.outputs}
        return cls(estimator, config.inputs[0].name, methods, dtypes)

    def run(self, inputs: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        features = inputs[self._input]
        computed: dict[str, Any] = {}
        results: dict[str, Any] = {}
        for output in outputs:
            method = self._methods[output]
            if method not in computed:
                computed[method] = getattr(self._estimator, method)(features)
            results[output] = np.asarray(computed[method]).astype(self._dtypes[output], copy=False)
        return results

    def close(self) -> None:
        self._estimator = None
