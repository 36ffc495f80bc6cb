"""A tiktoken encoding read from a local `.tiktoken` file, for token costs without the network.

tiktoken downloads an encoding's ranks on first use, which a gateway in a closed network cannot do.
A `.tiktoken` file (the ranks, one base64 token and its rank per line, as tiktoken publishes them)
can be copied next to the config instead; its name says which encoding it holds
(`cl100k_base.tiktoken`, `o200k_base.tiktoken`). The rest of an encoding (the pattern that splits
text before merging, the special tokens) lives in tiktoken's own definition of that encoding, inside
the function that would download its ranks: that function is called once, at build time, with its
ranks loader answering the local file's ranks instead, so the pattern comes from the library and
nothing is fetched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

# The names tiktoken's encoding definitions use to load their ranks (a .tiktoken file, or GPT-2's
# vocabulary and merges), replaced while one definition runs.
_LOADERS = ("load_tiktoken_bpe", "data_gym_to_mergeable_bpe_ranks")


def load_encoding(path: Path) -> Any:
    """The tiktoken encoding named by `path`'s stem, with the ranks in `path`."""
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe
    from tiktoken_ext import openai_public  # type: ignore[import-untyped]

    constructors: dict[str, Callable[[], dict[str, Any]]] = openai_public.ENCODING_CONSTRUCTORS
    define = constructors.get(path.stem)
    if define is None:
        known = ", ".join(sorted(constructors))
        raise ValueError(f"{path.name}: a .tiktoken file is named after its encoding, one of {known}")
    ranks = load_tiktoken_bpe(str(path))  # a local path: read, never fetched
    with _ranks_from_file(openai_public, ranks):
        definition = define()
    return tiktoken.Encoding(**definition)


@contextmanager
def _ranks_from_file(module: ModuleType, ranks: dict[bytes, int]) -> Iterator[None]:
    saved = {name: getattr(module, name) for name in _LOADERS if hasattr(module, name)}

    def local(*_args: object, **_kwargs: object) -> dict[bytes, int]:
        return ranks

    for name in saved:
        setattr(module, name, local)
    try:
        yield
    finally:
        for name, loader in saved.items():
            setattr(module, name, loader)
