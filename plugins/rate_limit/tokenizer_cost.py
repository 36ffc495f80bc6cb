"""Token costs counted with the model's own tokenizer: a Hugging Face `tokenizer.json` file, or a
tiktoken encoding's `.tiktoken` file (`tiktoken_cost.py`).

The estimate in `costs.cost_tokens` (characters / 4) is close for English prose and far off for
code, other scripts and token-id prompts; a tokenizer counts what the server will. The prompt is
the same text the estimate reads (prompt, input, chat messages' content); the answer's allowance
(`max_tokens`) is added as before. The `tokenizers` and `tiktoken` packages are optional (`pip
install turnout[llm]`): a config that names a tokenizer without them fails to build, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.core.context import RequestContext
from gateway.core.extras import require_extra
from plugins.rate_limit.costs import Cost, json_head, prompt_texts


def tokenizer_cost(path: Path) -> Cost:
    """A cost function counting the prompt's tokens with the tokenizer in `path`."""
    if path.suffix == ".tiktoken":
        require_extra("llm", "token costs counted with a .tiktoken file", ["tiktoken"])
        from plugins.rate_limit.tiktoken_cost import load_encoding

        encoding: Any = load_encoding(path)
        # One text at a time: tiktoken's batch call hands the texts to a thread pool.
        return _counted(lambda texts: sum(len(encoding.encode_ordinary(text)) for text in texts))
    require_extra("llm", "token costs counted with a tokenizer file", ["tokenizers"])
    from tokenizers import Tokenizer

    tokenizer: Any = Tokenizer.from_file(str(path))
    return _counted(lambda texts: sum(len(encoded.ids) for encoded in tokenizer.encode_batch(texts)))


def _counted(count: Callable[[list[str]], int]) -> Cost:
    """The cost of a request whose prompt texts `count` turns into tokens."""

    def cost(ctx: RequestContext) -> int:
        document = json_head(ctx)
        if document is None:
            return 1
        texts, prompt = prompt_texts(document)
        if texts:
            prompt += count(texts)
        answer = document.get("max_tokens", document.get("max_completion_tokens"))
        return max(1, prompt + (answer if isinstance(answer, int) and answer > 0 else 0))

    return cost
