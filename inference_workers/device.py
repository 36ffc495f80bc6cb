"""Which device a worker or a model runs on, and how many CUDA GPUs this host can see.

GPUs are counted through NVML (`nvidia-ml-py`), then PyTorch, then `nvidia-smi -L`, whichever is
installed, so a CPU-only host needs none of them. `CUDA_VISIBLE_DEVICES` narrows what a process may
use, as CUDA itself does; the pool sets it to give each worker its own GPU.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Final, Literal

# nvidia-smi answers in well under a second on a healthy host; past this it is hung on a broken
# driver, and the host is better treated as having no usable GPU.
NVIDIA_SMI_TIMEOUT_S: Final = 10.0

log = logging.getLogger(__name__)


class DeviceError(Exception):
    """A device that was asked for cannot be used on this host."""


@dataclass(frozen=True, slots=True)
class Device:
    kind: Literal["cpu", "cuda"]
    index: int = 0
    """The CUDA device index as this process sees it (after CUDA_VISIBLE_DEVICES)."""

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"


CPU: Final = Device("cpu")


def parse_device(spec: str, visible_gpus: int, *, where: str = "--device") -> Device:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' -> a usable Device, or DeviceError saying why not."""
    if spec == "cpu":
        return CPU
    if spec == "auto":
        return Device("cuda", 0) if visible_gpus > 0 else CPU
    kind, _, index_text = spec.partition(":")
    if kind != "cuda" or (index_text and not index_text.isdigit()):
        raise DeviceError(f"{where} {spec!r}: use auto, cpu, cuda or cuda:N")
    index = int(index_text) if index_text else 0
    if visible_gpus == 0:
        mask = os.environ.get("CUDA_VISIBLE_DEVICES")
        narrowed = "" if mask is None else f" with CUDA_VISIBLE_DEVICES={mask!r}"
        raise DeviceError(
            f"{where} {spec}: no CUDA GPU is visible on this host{narrowed} (asked NVML, nvidia-smi and "
            "PyTorch, whichever is installed); use --device cpu, or --device auto to fall back to the CPU"
        )
    if index >= visible_gpus:
        last = visible_gpus - 1
        raise DeviceError(f"{where} {spec}: only {visible_gpus} GPU(s) are visible (cuda:0..cuda:{last})")
    return Device("cuda", index)


def physical_gpu_count() -> int:
    """How many NVIDIA GPUs the host has, ignoring CUDA_VISIBLE_DEVICES (0 when none or unknown)."""
    count = _count_with_nvml()
    if count is None:
        count = _count_with_nvidia_smi()
    if count is None:
        count = _count_with_torch()
    return count or 0


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (physical indices or UUIDs);
    all of the host's GPUs when the variable is unset."""
    physical = physical_gpu_count()
    mask = os.environ.get("CUDA_VISIBLE_DEVICES")
    if mask is None:
        return [str(index) for index in range(physical)]
    if physical == 0:
        return []
    visible: list[str] = []
    for entry in (part.strip() for part in mask.split(",")):
        if (entry.isdigit() and int(entry) < physical) or entry.startswith(("GPU-", "MIG-")):
            visible.append(entry)
        else:
            break  # CUDA ignores everything from the first entry it cannot use
    return visible


def _count_with_nvml() -> int | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    finally:
        pynvml.nvmlShutdown()


def _count_with_nvidia_smi() -> int | None:
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None
    try:
        listing = subprocess.run(
            [executable, "-L"], capture_output=True, text=True, timeout=NVIDIA_SMI_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi failed (%s); assuming no GPU", exc)
        return 0
    if listing.returncode != 0:
        return 0
    return sum(1 for line in listing.stdout.splitlines() if line.startswith("GPU "))


def _count_with_torch() -> int | None:
    try:
        import torch
    except ImportError:
        return None
    return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
