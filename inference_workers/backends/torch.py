"""PyTorch backend (optional extra `turnout[torch]`): a TorchScript module saved with `torch.jit.save`.

TorchScript, not a pickled `nn.Module`, so loading runs no arbitrary Python and the model needs no
source code on the worker. Inputs are passed positionally in model.yaml order. The module may return
one tensor (the single output), a tuple or list (outputs in model.yaml order) or a dict keyed by
output name. PyTorch is imported only when a torch model loads, so workers without it start fine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import Field

from gateway.core.config_types import StrictModel
from inference_workers.backends.base import ModelLoadError, ModelSource, parse_options, require_artifact


class TorchOptions(StrictModel):
    threads: int = Field(default=1, ge=1)
    """Intra-op threads for CPU runs (process-wide in PyTorch; the largest value set wins)."""


class TorchBackend:
    __slots__ = ("_device", "_input_names", "_module", "_output_names", "_torch")

    def __init__(
        self, torch: Any, module: Any, device: Any, input_names: list[str], output_names: list[str]
    ) -> None:
        self._torch = torch
        self._module = module
        self._device = device
        self._input_names = input_names
        self._output_names = output_names

    @classmethod
    def load(cls, source: ModelSource) -> TorchBackend:
        options = parse_options(source, TorchOptions)
        path = require_artifact(source)
        try:
            import torch
        except ImportError:
            raise ModelLoadError(
                f"{source.label}: the torch backend needs PyTorch: pip install 'turnout[torch]'"
            ) from None
        if source.device.kind == "cuda" and not torch.cuda.is_available():
            raise ModelLoadError(f"{source.label}: device {source.device} but PyTorch sees no CUDA GPU")
        device = torch.device(str(source.device))
        if source.device.kind == "cpu" and torch.get_num_threads() < options.threads:
            torch.set_num_threads(options.threads)
        try:
            module = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # torch raises RuntimeError and friends for bad archives
            raise ModelLoadError(f"{source.label}: cannot load {path.name} as TorchScript: {exc}") from None
        module.eval()
        inputs = [spec.name for spec in source.config.inputs]
        outputs = [spec.name for spec in source.config.outputs]
        return cls(torch, module, device, inputs, outputs)

    def run(self, inputs: Mapping[str, Any], outputs: Sequence[str]) -> dict[str, Any]:
        torch = self._torch
        with torch.inference_mode():
            tensors = [
                torch.from_numpy(np.ascontiguousarray(inputs[name])).to(self._device)
                for name in self._input_names
            ]
            produced = self._module(*tensors)
        by_name = self._name_outputs(produced)
        return {name: by_name[name].detach().cpu().numpy() for name in outputs}

    def _name_outputs(self, produced: Any) -> dict[str, Any]:
        if isinstance(produced, dict):
            missing = [name for name in self._output_names if name not in produced]
            if missing:
                raise RuntimeError(f"the module's output dict lacks {missing}")
            return produced
        values = list(produced) if isinstance(produced, tuple | list) else [produced]
        if len(values) != len(self._output_names):
            raise RuntimeError(
                f"the module returned {len(values)} tensors; model.yaml lists {len(self._output_names)}"
            )
        return dict(zip(self._output_names, values, strict=True))

    def close(self) -> None:
        self._module = None
        if self._device.type == "cuda":
            self._torch.cuda.empty_cache()
