"""The model name and version in an inference path, found with string operations (no regex).

OIP v2 (KServe v2, Triton):  /v2/models/{name}[/versions/{v}][/infer|/ready|...]
KServe v1 (TF Serving):      /v1/models/{name}[/versions/{v}][:predict|:explain]

Which layouts a path is read in is the upstream protocol's decision (`path_parser`): an `oip_v2`
cluster's paths are read as OIP v2 only, a `kserve_v1` cluster's as KServe v1 only, and an
`openai` cluster's never (`/v1/models/gpt-a` is OpenAI's model lookup, not a KServe path; the
model of an OpenAI request is in its body). A plain `http` cluster reads both, as it always has.

The path is the normalised one (`gateway/core/paths.py`): `/v2/models/ris%6B/infer` names `risk`,
as the upstream will read it. Escapes of other characters stay escaped in the name (`my%20model`).
"""

from __future__ import annotations

from collections.abc import Callable

# Both layouts share "/models/" after a three-character version segment; testing that first costs one
# call for the paths that are neither.
_MODELS = "/models/"
_NAME_START = len("/v2/models/")
_NOTHING: tuple[str | None, str | None] = (None, None)
# KServe v1's verbs; a colon elsewhere is left in the name rather than guessed at.
_V1_VERBS = (":predict", ":explain")


def _strip_verb(segment: str) -> str:
    for verb in _V1_VERBS:
        if segment.endswith(verb):
            return segment[: -len(verb)]
    return segment


def model_from_path(path: str) -> tuple[str | None, str | None]:
    """(model, version) for an OIP v2 or KServe v1 path; (None, None) for any other path."""
    if not path.startswith(_MODELS, 3):
        return _NOTHING
    layout = path[:3]
    if layout == "/v2":
        v1 = False
    elif layout == "/v1":
        v1 = True
    else:
        return _NOTHING
    name, _, tail = path[_NAME_START:].partition("/")
    if v1:
        name = _strip_verb(name)
    if not name:
        return _NOTHING
    if not tail.startswith("versions/"):
        return name, None
    version = tail[len("versions/") :].partition("/")[0]
    if v1:
        version = _strip_verb(version)
    return name, version or None


def oip_v2_model_from_path(path: str) -> tuple[str | None, str | None]:
    """(model, version) for an OIP v2 path only."""
    return model_from_path(path) if path.startswith("/v2/") else _NOTHING


def kserve_v1_model_from_path(path: str) -> tuple[str | None, str | None]:
    """(model, version) for a KServe v1 path only."""
    return model_from_path(path) if path.startswith("/v1/") else _NOTHING


def no_model_in_path(path: str) -> tuple[str | None, str | None]:
    """Protocols whose paths name no model (OpenAI's: the model is in the body)."""
    return _NOTHING


ModelPathParser = Callable[[str], tuple[str | None, str | None]]

_PARSERS: dict[str, ModelPathParser] = {
    "http": model_from_path,
    "oip_v2": oip_v2_model_from_path,
    "kserve_v1": kserve_v1_model_from_path,
    "openai": no_model_in_path,
}


def path_parser(protocol: str) -> ModelPathParser:
    """How paths sent to a cluster of `protocol` name a model; ValueError for an unknown protocol."""
    try:
        return _PARSERS[protocol]
    except KeyError:
        raise ValueError(f"no model path layout for protocol {protocol!r}") from None
