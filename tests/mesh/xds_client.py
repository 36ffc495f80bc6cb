"""A proxyless gRPC client on xds:///NAME (grpcio's own xDS resolver), run as its own process.

grpcio reads GRPC_XDS_BOOTSTRAP once per process, so each test's client gets a process of its own.
It sends OIP v2 ModelInfer calls without pause and prints, per call, the model version that answered
and the time, one line each, until it is killed.

    python -m tests.mesh.xds_client xds:///risk
"""

from __future__ import annotations

import sys
import time

import grpc

from inference_workers.grpc_gen import open_inference_grpc_pb2 as oip
from inference_workers.grpc_gen import open_inference_grpc_pb2_grpc as oip_grpc


def main(target: str) -> None:
    channel = grpc.insecure_channel(target)
    stub = oip_grpc.GRPCInferenceServiceStub(channel)
    request = oip.ModelInferRequest(model_name="risk")
    while True:
        try:
            reply = stub.ModelInfer(request, timeout=5)
            line = f"{time.time():.3f} {reply.model_version}"
        except grpc.RpcError as exc:
            line = f"{time.time():.3f} error {exc.code().name}"
            time.sleep(0.05)
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1])
