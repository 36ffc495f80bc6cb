"""Wire formats as pure codecs (no I/O), shared by the gateway and the inference workers.

datatypes      protocol datatypes <-> numpy dtypes
json_tensors   tensor `data` in JSON bodies <-> numpy arrays, with per-tensor checks
binary         the binary tensor data extension (raw little-endian tensors after a JSON header)
oip_v2         Open Inference Protocol v2 REST requests and responses
kserve_v1      KServe V1 `instances` / `predictions` bodies
"""
