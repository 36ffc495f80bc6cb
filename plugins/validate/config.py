"""Options of the request validation filter: body size and type rules, and OIP v2 checks."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import ByteSize, Duration, StrictModel
from gateway.core.protocols.datatypes import DATATYPES
from plugins._urls import is_http_url

# A shape dimension of -1 accepts any size, as in OIP v2 metadata.
_ANY_SIZE = -1


class TensorSignatureConfig(StrictModel):
    """One input as the model expects it, written in the config."""

    name: str = Field(min_length=1, description="The input's name.")
    datatype: str = Field(description="Its OIP v2 datatype, like FP32 or BYTES.")
    shape: tuple[int, ...] = Field(
        description="Its shape; -1 accepts any size (usually the batch dimension)."
    )

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, value: str) -> str:
        if value not in DATATYPES:
            raise ValueError(f"unknown datatype {value!r}; use one of {', '.join(sorted(DATATYPES))}")
        return value

    @field_validator("shape")
    @classmethod
    def _sizes(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < _ANY_SIZE for size in value):
            raise ValueError("a dimension is a size, or -1 for any size")
        return value


class ModelSignatureConfig(StrictModel):
    """A model's signature written in the config, for servers that publish no metadata."""

    inputs: tuple[TensorSignatureConfig, ...] = Field(
        default=(), description="The model's inputs; empty means unknown (not checked)."
    )
    outputs: tuple[str, ...] = Field(
        default=(), description="Names of the outputs a request may ask for; empty means unknown."
    )


class ValidateConfig(StrictModel):
    """`validate`: refuse malformed requests before they reach the upstream."""

    max_body_bytes: ByteSize | None = Field(
        default=None, description="The largest request body accepted (413 above it)."
    )
    content_types: tuple[str, ...] | None = Field(
        default=None,
        min_length=1,
        description="Media types a request body may have, like application/json (415 otherwise).",
    )
    oip_v2: bool = Field(
        default=False,
        description="Check Open Inference Protocol v2 inference requests (POST .../infer): well-formed "
        "tensors and, when the model's metadata can be fetched, its inputs, datatypes and shapes.",
    )
    metadata_from: str | None = Field(
        default=None,
        description="Base URL of a server answering GET /v2/models/{model}[/versions/{v}] with the model's "
        "metadata, like http://127.0.0.1:8001. Without it (and without a fetcher wired by the gateway) "
        "only the request's own consistency is checked.",
    )
    # A minute: a model's signature changes only with a new deployment, and a minute bounds how long
    # requests are checked against the old one.
    metadata_ttl: Duration = Field(default=60.0, gt=0, description="How long fetched metadata is trusted.")
    # 2 s: the first request for a model waits at most this long; after it the request goes through with
    # the structural checks only.
    metadata_timeout: Duration = Field(default=2.0, gt=0, description="The most one metadata fetch may take.")
    require_all_inputs: bool = Field(
        default=True, description="Refuse a request that omits one of the model's inputs."
    )
    strict: bool = Field(
        default=False,
        description="Refuse what the model's metadata does not declare (no inputs listed, an output not "
        "listed) instead of letting it through unchecked and logging it once per model.",
    )
    signatures: dict[str, ModelSignatureConfig] = Field(
        default_factory=dict,
        description="Signatures by model name, used instead of fetched metadata (for servers, like "
        "TorchServe, that publish none).",
    )

    @field_validator("content_types")
    @classmethod
    def _lower_case(cls, values: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if values is None:
            return None
        return tuple(dict.fromkeys(value.split(";")[0].strip().lower() for value in values))

    @field_validator("metadata_from")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not is_http_url(value):
            raise ValueError(f"metadata_from must be an http:// or https:// URL with a host, got {value!r}")
        return value.rstrip("/") if value is not None else None

    @model_validator(mode="after")
    def _checks_something(self) -> ValidateConfig:
        if self.max_body_bytes is None and self.content_types is None and not self.oip_v2:
            raise ValueError("validate checks nothing: set max_body_bytes, content_types or oip_v2")
        if not self.oip_v2:
            for name, value in (("metadata_from", self.metadata_from), ("signatures", self.signatures)):
                if value:
                    raise ValueError(f"{name} is used only with oip_v2: true")
            if self.strict:
                raise ValueError("strict is used only with oip_v2: true")
        return self
