"""Model backends, one module each; `load_backend` maps a model.yaml `backend` name to its loader.

The mapping is explicit and each backend module is imported only when a model of its kind loads, so a
worker serving ONNX models never imports scikit-learn or PyTorch.
"""

from __future__ import annotations

from inference_workers.backends.base import Backend, ModelLoadError, ModelSource


def load_backend(source: ModelSource) -> Backend:
    """Load one model version with the backend its config names (blocking: call from a thread)."""
    backend = source.config.backend
    if backend == "onnxruntime":
        from inference_workers.backends.onnx import OnnxBackend

        return OnnxBackend.load(source)
    if backend == "sklearn":
        from inference_workers.backends.sklearn import SklearnBackend

        return SklearnBackend.load(source)
    if backend == "torch":
        from inference_workers.backends.torch import TorchBackend

        return TorchBackend.load(source)
    raise ModelLoadError(f"{source.label}: unknown backend {backend!r}")


__all__ = ["Backend", "ModelLoadError", "ModelSource", "load_backend"]
