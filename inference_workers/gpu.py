"""GPU memory and utilisation for /metrics, through NVML (`nvidia-ml-py`) or else PyTorch.

Both are optional: `gpu_collector()` returns None when neither is installed or no GPU is visible, and
the worker then exposes no GPU metrics. The collector reports the GPUs this process may use
(CUDA_VISIBLE_DEVICES), labelled by their physical index or UUID as that variable names them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from inference_workers.device import visible_gpus

log = logging.getLogger(__name__)


class NvmlCollector(Collector):
    """Reads memory and utilisation from NVML at each scrape. `close()` shuts NVML down."""

    def __init__(self, nvml: Any, handles: list[tuple[str, Any]]) -> None:
        self._nvml = nvml
        self._handles = handles

    @classmethod
    def open(cls, gpus: list[str]) -> NvmlCollector | None:
        try:
            import pynvml
        except ImportError:
            return None
        try:
            pynvml.nvmlInit()
            handles = [
                (
                    gpu,
                    pynvml.nvmlDeviceGetHandleByUUID(gpu)
                    if gpu.startswith(("GPU-", "MIG-"))
                    else pynvml.nvmlDeviceGetHandleByIndex(int(gpu)),
                )
                for gpu in gpus
            ]
        except pynvml.NVMLError as exc:
            log.warning("NVML unavailable (%s); no GPU metrics", exc)
            return None
        return cls(pynvml, handles)

    def collect(self) -> Iterator[Metric]:
        used, total, busy = _families()
        for label, handle in self._handles:
            try:
                memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                rates = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            except self._nvml.NVMLError as exc:
                log.warning("NVML read failed for GPU %s: %s", label, exc)
                continue
            used.add_metric((label,), float(memory.used))
            total.add_metric((label,), float(memory.total))
            busy.add_metric((label,), rates.gpu / 100.0)
        yield from (used, total, busy)

    def close(self) -> None:
        self._nvml.nvmlShutdown()


class TorchCollector(Collector):
    """Falls back to PyTorch's view: memory this process holds, and the device's total memory."""

    def __init__(self, torch: Any, gpus: list[str]) -> None:
        self._torch = torch
        self._gpus = gpus

    @classmethod
    def open(cls, gpus: list[str]) -> TorchCollector | None:
        try:
            import torch
        except ImportError:
            return None
        return cls(torch, gpus) if torch.cuda.is_available() else None

    def collect(self) -> Iterator[Metric]:
        used, total, _ = _families()
        for index, label in enumerate(self._gpus):
            used.add_metric((label,), float(self._torch.cuda.memory_reserved(index)))
            total.add_metric((label,), float(self._torch.cuda.get_device_properties(index).total_memory))
        yield used
        yield total

    def close(self) -> None:
        """Nothing to release: PyTorch owns its CUDA context."""


def gpu_collector() -> NvmlCollector | TorchCollector | None:
    """The best GPU collector available here, or None (no GPU, or neither library installed)."""
    gpus = visible_gpus()
    if not gpus:
        return None
    return NvmlCollector.open(gpus) or TorchCollector.open(gpus)


def _families() -> tuple[GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily("turnout_worker_gpu_memory_used_bytes", "GPU memory in use", labels=("gpu",)),
        GaugeMetricFamily("turnout_worker_gpu_memory_total_bytes", "GPU memory in all", labels=("gpu",)),
        GaugeMetricFamily(
            "turnout_worker_gpu_utilization_ratio", "Share of time the GPU was busy", labels=("gpu",)
        ),
    )
