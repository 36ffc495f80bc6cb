"""A tiny estimator for tests, pickled into a model repository by the fixtures.

`predict` sleeps for the first feature of the first row (in seconds) and returns each row's sum, so a
test controls how long one inference takes from the request itself.
"""

from __future__ import annotations

import time

import numpy as np


class SleepThenSum:
    def predict(self, features: np.ndarray) -> np.ndarray:
        time.sleep(float(features[0, 0]))
        return np.asarray(features.sum(axis=1), dtype=np.float32)
