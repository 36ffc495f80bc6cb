"""What every backend provides, and what it is given to load a model.

A backend turns one model artifact into a callable that maps named input arrays to named output
arrays. `run` is called from the model's executor threads, up to `instance_count` at once, so it must
be safe to call concurrently (ONNX Runtime sessions, fitted scikit-learn estimators and TorchScript
modules in inference mode all are). Loading happens in a thread too; it may be slow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from inference_workers.config import ModelConfig
from inference_workers.device import Device

OptionsT = TypeVar("OptionsT", bound=BaseModel)


class ModelLoadError(Exception):
    """A model version could not be loaded; the message says which and why."""


@dataclass(frozen=True, slots=True)
class ModelSource:
    """Everything needed to load one model version."""

    name: str
    version: int
    directory: Path
    config: ModelConfig
    device: Device

    @property
    def artifact(self) -> Path:
        return self.directory / self.config.artifact_name

    @property
    def label(self) -> str:
        return f"model '{self.name}' version {self.version}"


class Backend(Protocol):
    def run(self, inputs: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        """Named input arrays -> the named outputs asked for (numpy arrays)."""
        ...

    def close(self) -> None:
        """Release what the model holds (sessions, GPU memory)."""
        ...


def parse_options(source: ModelSource, options_type: type[OptionsT]) -> OptionsT:
    """The backend's own typed options from model.yaml's `options`, or a load error naming the key."""
    try:
        return options_type.model_validate(source.config.options)
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        raise ModelLoadError(f"{source.label}: {problems}") from None


def require_artifact(source: ModelSource) -> Path:
    path = source.artifact
    if not path.is_file():
        raise ModelLoadError(f"{source.label}: artifact {path.name} is missing from {source.directory}")
    return path
