"""What counting a prompt's tokens costs per request: the estimate against the two tokenizers.

    python bench/token_costs.py [--runs 15]

A token limit charges each request at admission (`plugins/rate_limit/costs.py`): by default an
estimate (characters / 4), or with `tokenizer:` the count of a Hugging Face `tokenizer.json` or a
tiktoken `.tiktoken` file. This times the three cost functions on chat bodies of three sizes. The
tokenizers are made here, with no download: a byte-level BPE of 8,000 tokens trained with the
`tokenizers` library on the standard library's sources, and the same vocabulary written as a
`.tiktoken` file (byte-level BPE ranks are tiktoken's format once the tokens are turned back into
bytes), read with cl100k_base's split pattern. Timed in the process's CPU time (every thread: a
tokenizer may work in threads of its own), best of the runs. Prints a Markdown table (the one in
bench/RESULTS.md).
"""

from __future__ import annotations

import argparse
import base64
import sys
import sysconfig
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.core.context import RequestContext
from plugins.rate_limit.costs import cost_tokens
from plugins.rate_limit.tokenizer_cost import tokenizer_cost

# A vocabulary the size of a small model's: large enough that merges cover common words.
VOCAB = 8000
# About this many characters are counted per timed run, whatever the prompt's size.
CHARS_PER_RUN = 2_000_000


def training_text() -> list[str]:
    """Prose and code: the standard library's own sources (a few MB, on every machine)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [path.read_text(errors="replace") for path in sorted(stdlib.glob("*.py"))[:120]]


def build_tokenizers(folder: Path) -> tuple[Path, Path]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(training_text(), trainer)
    json_path = folder / "tokenizer.json"
    tokenizer.save(str(json_path))
    # Byte-level BPE writes each byte as a printable character; undo that to get the token's bytes.
    printable = _byte_level_chars()
    back = {char: byte for byte, char in printable.items()}
    lines = []
    for token, rank in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1]):
        raw = bytes(back[char] for char in token)
        lines.append(f"{base64.b64encode(raw).decode()} {rank}\n")
    tiktoken_path = folder / "cl100k_base.tiktoken"
    tiktoken_path.write_text("".join(lines))
    return json_path, tiktoken_path


def _byte_level_chars() -> dict[int, str]:
    """Byte-level BPE's printable character for each byte (GPT-2's table): printable Latin-1
    bytes stand for themselves, the others take the code points from 256 on, in order."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    table = {byte: chr(byte) for byte in kept}
    extra = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


def chat(chars: int) -> RequestContext:
    text = (Path(__file__).read_text() * (chars // 2000 + 1))[:chars]
    ctx = RequestContext("POST", "/v1/chat/completions", "", {}, "10.0.0.1", 0.0)
    body = {"model": "m", "max_tokens": 64, "messages": [{"role": "user", "content": text}]}
    ctx.body = orjson.dumps(body)
    return ctx


def best_us(cost: Callable[[RequestContext], int], ctx: RequestContext, number: int, runs: int) -> float:
    timer = timeit.Timer(lambda: cost(ctx), timer=time.process_time)
    return min(timer.timeit(number=number) / number * 1e6 for _ in range(runs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=15, help="timed runs per cell; the best is kept (15)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        json_path, tiktoken_path = build_tokenizers(Path(folder))
        costs = {
            "estimate": cost_tokens,
            "tokenizer.json": tokenizer_cost(json_path),
            ".tiktoken": tokenizer_cost(tiktoken_path),
        }
        print("| prompt | estimate µs | tokenizer.json µs | .tiktoken µs | tokens (estimate/json/tiktoken) |")
        print("|---|---|---|---|---|")
        for chars in (200, 2_000, 20_000):
            ctx = chat(chars)
            number = max(CHARS_PER_RUN // chars // 20, 5)
            times = [best_us(cost, ctx, number, args.runs) for cost in costs.values()]
            counts = " / ".join(str(cost(ctx)) for cost in costs.values())
            cells = " | ".join(f"{value:,.1f}" for value in times)
            print(f"| {chars:,} chars | {cells} | {counts} |")


if __name__ == "__main__":
    main()
