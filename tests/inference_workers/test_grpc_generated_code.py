"""The committed gRPC modules are what the .proto file generates, and the wire contract is the
canonical Open Inference Protocol's."""

from __future__ import annotations

from pathlib import Path

from inference_workers.grpc_codec import pb
from inference_workers.proto.generate import GENERATED_FILES, PACKAGE_PATH, REPOSITORY_ROOT, generate


def test_regeneration_reproduces_the_committed_files(tmp_path: Path) -> None:
    generated = generate(tmp_path)
    assert [path.name for path in generated] == list(GENERATED_FILES)
    for path in generated:
        committed = REPOSITORY_ROOT / PACKAGE_PATH / path.name
        assert path.read_bytes() == committed.read_bytes(), f"{path.name} is stale: run the generator"


def test_service_and_field_numbers_match_the_protocol() -> None:
    service = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert service.full_name == "inference.GRPCInferenceService"
    assert [method.name for method in service.methods] == [
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
    ]

    def numbers(message: object) -> dict[str, int]:
        return {field.name: field.number for field in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert numbers(pb.ModelInferRequest) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    assert numbers(pb.ModelInferRequest.InferInputTensor) == {
        "name": 1,
        "datatype": 2,
        "shape": 3,
        "parameters": 4,
        "contents": 5,
    }
    assert numbers(pb.ModelInferResponse) == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "outputs": 5,
        "raw_output_contents": 6,
    }
    assert numbers(pb.ModelStreamInferResponse) == {"error_message": 1, "infer_response": 2}
    assert numbers(pb.InferParameter) == {
        "bool_param": 1,
        "int64_param": 2,
        "string_param": 3,
        "double_param": 4,
        "uint64_param": 5,
    }
    assert numbers(pb.InferTensorContents) == {
        "bool_contents": 1,
        "int_contents": 2,
        "int64_contents": 3,
        "uint_contents": 4,
        "uint64_contents": 5,
        "fp32_contents": 6,
        "fp64_contents": 7,
        "bytes_contents": 8,
    }
    assert numbers(pb.ModelMetadataResponse) == {
        "name": 1,
        "versions": 2,
        "platform": 3,
        "inputs": 4,
        "outputs": 5,
    }
