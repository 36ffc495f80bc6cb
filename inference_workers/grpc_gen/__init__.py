"""Python modules generated from `inference_workers/proto/open_inference_grpc.proto`; do not edit.

Regenerate with `python -m inference_workers.proto.generate`.
"""
