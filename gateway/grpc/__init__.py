"""The gRPC front door: gRPC calls (OIP v2's `inference.GRPCInferenceService` and any other service)
decided by the same router, filters and experiments as HTTP requests, and relayed to the cluster."""
