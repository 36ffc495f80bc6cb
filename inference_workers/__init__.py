"""The inference workers: model servers speaking OIP over HTTP and gRPC (`turnout worker(s)`).

They need the `workers` extra (ONNX Runtime, scikit-learn, skl2onnx, gRPC); checked here, before
any of their modules imports one of those, so a gateway-only install says what to install.
"""

from gateway.core.extras import require_extra

require_extra(
    "workers",
    "the inference workers",
    ("onnxruntime", "sklearn", "skl2onnx", "grpc", "google.protobuf"),
)
