"""Options of the transform filter: header edits both ways, and JSON field renames in request bodies.

Header edits run in the order rename, remove, add; `add` sets a header, replacing any copy already
there. Body renames move a field at a dotted path (`inputs.text`) to another, in the order written;
missing fields are left alone and missing parent objects of the destination are created.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.core.config_types import StrictModel
from plugins._request_headers import HeaderName, HeaderValue

# Headers the data path itself manages from the message framing and the connection: editing them
# would desynchronise the HTTP framing or break the hop-by-hop rules (RFC 9110 section 7.6.1).
PROTECTED_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "keep-alive"}
)


class HeaderEdits(StrictModel):
    """Edits of one direction's headers."""

    rename: dict[HeaderName, HeaderName] = Field(default_factory=dict, description="{old-name: new-name}")
    remove: tuple[HeaderName, ...] = Field(default=(), description="Headers to drop.")
    add: dict[HeaderName, HeaderValue] = Field(
        default_factory=dict, description="Headers to set, {name: value}; an existing value is replaced."
    )

    @model_validator(mode="after")
    def _editable(self) -> HeaderEdits:
        names = {*self.rename, *self.rename.values(), *self.remove, *self.add}
        protected = sorted(names & PROTECTED_HEADERS)
        if protected:
            raise ValueError(f"{', '.join(protected)} cannot be edited: the gateway sets them itself")
        for old, new in self.rename.items():
            if old == new:
                raise ValueError(f"renaming {old} to itself")
        return self

    @property
    def empty(self) -> bool:
        return not (self.rename or self.remove or self.add)


def _check_path(path: str) -> str:
    if not path or any(not segment for segment in path.split(".")):
        raise ValueError(f"invalid field path {path!r}: write names joined by dots, like inputs.text")
    return path


class TransformConfig(StrictModel):
    """`transform`: rewrite headers and JSON request fields between the client and the model server."""

    request_headers: HeaderEdits = Field(default_factory=HeaderEdits, description="Edits of request headers.")
    response_headers: HeaderEdits = Field(
        default_factory=HeaderEdits, description="Edits of response headers."
    )
    request_body_rename: dict[str, str] = Field(
        default_factory=dict, description='JSON request fields to move, {"old.path": "new.path"}.'
    )

    @field_validator("request_body_rename")
    @classmethod
    def _paths(cls, renames: dict[str, str]) -> dict[str, str]:
        for old, new in renames.items():
            _check_path(old)
            _check_path(new)
            if old == new:
                raise ValueError(f"moving {old} to itself")
        return renames
