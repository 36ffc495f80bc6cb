"""A scikit-learn model served by KServe's Python model server (run by the kserve venv's python).

    python kserve_sklearn.py MODEL_FILE NAME HTTP_PORT

The model answers OIP v2 (`/v2/models/NAME/infer`) and KServe v1 (`/v1/models/NAME:predict`), as
KServe's own sklearn server does: one output `output-0` with a prediction per row. A request whose
rows do not fit the model makes scikit-learn raise, which KServe answers with a 500.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

import joblib
import kserve
import numpy as np
from kserve import InferOutput, InferRequest, InferResponse


class SklearnModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self._path = path
        self._model: Any = None

    def load(self) -> bool:
        self._model = joblib.load(self._path)
        self.ready = True
        return True

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        if isinstance(payload, InferRequest):
            rows = payload.inputs[0].as_numpy()
            result = self._model.predict(rows)
            output = InferOutput("output-0", list(result.shape), "INT64", result.astype(np.int64))
            # KServe's own sklearn server answers with the request's id, or a new one.
            return InferResponse(payload.id or str(uuid.uuid4()), self.name, [output])
        instances = np.asarray(payload["instances"])
        return {"predictions": self._model.predict(instances).tolist()}


if __name__ == "__main__":
    model_file, name, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model = SklearnModel(name, model_file)
    model.load()
    kserve.ModelServer(http_port=port, enable_grpc=False, workers=1).start([model])
