"""What the worker answers, independent of transport: REST and gRPC handlers both call this.

Requests arrive already decoded into `InferRequest`s; the service picks the model version, checks
the tensors against its signature, runs it and returns an `InferResponse`. Failures are gateway
errors: 400 for the caller's mistakes, 404 for unknown models and versions, 503 for versions that
are not loaded or a worker that is stopping, and 500 only when the model itself misbehaves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from gateway.core.errors import GatewayError, ServiceUnavailable
from gateway.core.protocols.oip_v2 import InferRequest, InferResponse
from inference_workers.config import ModelConfig, TensorSpec
from inference_workers.repository import ModelRepository
from inference_workers.served_model import WorkerLoad
from inference_workers.signature import ModelOutputError

log = logging.getLogger(__name__)

SERVER_NAME: Final = "turnout-worker"
EXTENSIONS: Final = ("binary_tensor_data", "model_repository", "parameters")
"""Protocol extensions served, by their Triton names."""


def _package_version() -> str:
    try:
        return metadata.version("turnout")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: list[str]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "versions": self.versions,
            "platform": self.platform,
            "inputs": [_tensor_json(spec) for spec in self.inputs],
            "outputs": [_tensor_json(spec) for spec in self.outputs],
        }


class InferenceService:
    def __init__(self, repository: ModelRepository, load: WorkerLoad, name: str = SERVER_NAME) -> None:
        self.repository = repository
        self.load = load
        self.name = name
        self.version = _package_version()
        self.stopping = False

    def is_live(self) -> bool:
        return True

    def is_ready(self) -> bool:
        return not self.stopping and self.repository.is_ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "extensions": list(EXTENSIONS)}

    def model_metadata(self, name: str, version: str | None) -> ModelMetadata:
        slot = self.repository.resolve(name, version)
        config = _config_of(slot.config, slot.label, slot.reason)
        versions = [str(each.version) for each in self.repository.versions(name)]
        return ModelMetadata(name, versions, config.platform, config.inputs, config.outputs)

    def is_model_ready(self, name: str, version: str | None) -> bool:
        return self.repository.resolve(name, version).served is not None

    async def infer(self, name: str, version: str | None, request: InferRequest) -> InferResponse:
        if self.stopping:
            raise ServiceUnavailable("worker is shutting down")
        slot, served = await self.repository.acquire(name, version)
        signature = served.signature
        inputs, batch_size = signature.check_inputs(request.inputs)
        outputs = signature.select_outputs(request.outputs)
        try:
            results = await served.infer(inputs, outputs, batch_size)
            tensors = signature.output_tensors(results, outputs)
        except GatewayError:
            raise
        except ModelOutputError as exc:
            raise GatewayError(str(exc)) from None
        except Exception as exc:
            log.exception("inference failed in %s", slot.label)
            raise GatewayError(f"{slot.label}: inference failed: {exc}") from None
        return InferResponse(name, tensors, str(slot.version), request.id, request.parameters)


def _config_of(config: ModelConfig | None, label: str, reason: str) -> ModelConfig:
    if config is None:
        raise ServiceUnavailable(f"{label} has no usable configuration: {reason}")
    return config


def _tensor_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
