"""The typed form of a model version's `model.yaml`.

    DIR/<name>/<version>/model.yaml      backend, signature, batching, device, instances, options
    DIR/<name>/<version>/model.onnx      (or model.joblib, model.pt: the backend's artifact)

Shapes are full tensor shapes with -1 for a dimension of variable size; when `max_batch_size` is
above 0 the first dimension of every tensor is the batch dimension and must be -1. `options` are
the backend's own settings (ONNX Runtime thread counts, scikit-learn output methods, ...), checked
by that backend's own strict model when it loads, so a typo there fails the load with its name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from gateway.core.config_types import StrictModel
from gateway.core.protocols.datatypes import DATATYPES

CONFIG_FILE: Final = "model.yaml"

BackendName = Literal["onnxruntime", "sklearn", "torch"]

DEFAULT_ARTIFACTS: Final[dict[str, str]] = {
    "onnxruntime": "model.onnx",
    "sklearn": "model.joblib",
    "torch": "model.pt",
}

PLATFORMS: Final[dict[str, str]] = {
    "onnxruntime": "onnxruntime_onnx",
    "sklearn": "sklearn_joblib",
    "torch": "pytorch_torchscript",
}
"""The `platform` string of model metadata, per backend (Triton's names where Triton has one)."""

# More threads per model than this only adds contention on any host we target; a larger value is
# almost certainly a typo (instances multiply memory for GPU models).
MAX_INSTANCE_COUNT: Final = 64


class TensorSpec(StrictModel):
    name: str = Field(min_length=1)
    datatype: str
    shape: tuple[int, ...]

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; use one of {', '.join(sorted(DATATYPES))}")
        return value

    @field_validator("shape")
    @classmethod
    def _valid_dims(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(dim < -1 for dim in value):
            raise ValueError("dimensions are sizes >= 0, or -1 for a variable size")
        return value


class ModelConfig(StrictModel):
    backend: BackendName
    inputs: tuple[TensorSpec, ...] = Field(min_length=1)
    outputs: tuple[TensorSpec, ...] = Field(min_length=1)
    max_batch_size: int = Field(default=0, ge=0)
    """0: the model takes whole tensors; above 0: the first dimension is a batch of at most this."""
    device: str = "auto"
    """auto (the worker's device), cpu, cuda or cuda:N."""
    instance_count: int = Field(default=1, ge=1, le=MAX_INSTANCE_COUNT)
    """How many inferences of this model may run at once (threads of its executor)."""
    lazy: bool = False
    """Load on the first request instead of at worker start."""
    artifact: str | None = None
    """File name of the model inside the version directory; the backend's default when absent."""
    options: dict[str, Any] = Field(default_factory=dict)
    description: str = ""

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            names = [spec.name for spec in specs]
            if len(set(names)) != len(names):
                raise ValueError(f"{kind} names must be unique, got {names}")
            if self.max_batch_size > 0:
                for spec in specs:
                    if not spec.shape or spec.shape[0] != -1:
                        raise ValueError(
                            f"{kind} '{spec.name}': with max_batch_size > 0 the first dimension is the "
                            f"batch and must be -1, got shape {list(spec.shape)}"
                        )
        return self

    @property
    def artifact_name(self) -> str:
        return self.artifact or DEFAULT_ARTIFACTS[self.backend]

    @property
    def platform(self) -> str:
        return PLATFORMS[self.backend]


class ModelConfigError(Exception):
    """A model.yaml that cannot be read or does not validate; the message names the file."""


def read_model_config(version_dir: Path) -> ModelConfig:
    """Read and validate `version_dir/model.yaml`."""
    path = version_dir / CONFIG_FILE
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ModelConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelConfigError(f"{path}: must be a mapping of settings")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'model'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ModelConfigError(f"{path}: {problems}") from None
