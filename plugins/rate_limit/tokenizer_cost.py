"""Token costs counted with the model's own tokenizer: a Hugging Face `tokenizer.json` file.

The estimate in `costs.cost_tokens` (characters / 4) is close for English prose and far off for
code, other scripts and token-id prompts; a tokenizer counts what the server will. The prompt is
the same text the estimate reads (prompt, input, chat messages' content); the answer's allowance
(`max_tokens`) is added as before. The `tokenizers` package is optional (`pip install
turnout[llm]`): a config that names a tokenizer without it fails to build, with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.core.context import RequestContext
from gateway.core.extras import require_extra
from plugins.rate_limit.costs import Cost, json_head, prompt_texts


def tokenizer_cost(path: Path) -> Cost:
    """A cost function counting the prompt's tokens with the tokenizer in `path`."""
    require_extra("llm", "token costs counted with a tokenizer file", ["tokenizers"])
    from tokenizers import Tokenizer

    tokenizer: Any = Tokenizer.from_file(str(path))

    def cost(ctx: RequestContext) -> int:
        document = json_head(ctx)
        if document is None:
            return 1
        texts, prompt = prompt_texts(document)
        if texts:
            prompt += sum(len(encoded.ids) for encoded in tokenizer.encode_batch(texts))
        answer = document.get("max_tokens", document.get("max_completion_tokens"))
        return max(1, prompt + (answer if isinstance(answer, int) and answer > 0 else 0))

    return cost
