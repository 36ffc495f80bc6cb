"""Token costs counted with a tokenizer file: the prompt's real token count, not characters / 4."""

from __future__ import annotations

import base64
from pathlib import Path

import orjson
import pytest
import tiktoken.load
from prometheus_client import CollectorRegistry
from tiktoken_ext import openai_public  # type: ignore[import-untyped]
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from gateway.core.context import RequestContext
from gateway.core.filters import BuildContext, Response
from plugins.rate_limit import FACTORY, RateLimitConfig
from plugins.rate_limit.costs import cost_tokens
from plugins.rate_limit.tokenizer_cost import tokenizer_cost


def word_tokenizer(path: Path) -> Path:
    """A real tokenizer.json: one token per known word, [UNK] for any other."""
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.save(str(path))
    return path


def chat(content: object, **extra: object) -> RequestContext:
    ctx = RequestContext("POST", "/v1/chat/completions", "", {}, "10.0.0.1", 0.0)
    ctx.body = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": content}], **extra})
    return ctx


def test_the_tokenizer_counts_what_the_estimate_guesses(tmp_path: Path) -> None:
    cost = tokenizer_cost(word_tokenizer(tmp_path / "tokenizer.json"))
    long_words = chat("hello world hello xylophonically")  # 4 words, 32 characters
    assert (cost(long_words), cost_tokens(long_words)) == (4, 8)
    parts = chat([{"type": "text", "text": "hello world"}], max_tokens=10)
    assert cost(parts) == 12
    ids = RequestContext("POST", "/v1/completions", "", {}, "10.0.0.1", 0.0)
    ids.body = orjson.dumps({"model": "m", "prompt": [1, 2, 3]})
    assert cost(ids) == 3


def test_a_limit_names_its_tokenizer_relative_to_the_config(tmp_path: Path) -> None:
    word_tokenizer(tmp_path / "tok.json")
    limit = {"key": "route", "rate": "5/min", "burst": 5, "cost": "tokens", "tokenizer": "tok.json"}
    config = RateLimitConfig.model_validate({"limits": [limit]})
    built = FACTORY(config, BuildContext("chat", "up", CollectorRegistry(), base_dir=str(tmp_path)))
    # 4 tokens by the tokenizer (the estimate: 8, more than the burst of 5, a 413).
    assert built.on_request(chat("hello world hello xylophonically")) is None
    refused = built.on_request(chat("hello world"))
    assert isinstance(refused, Response) and refused.status == 429


def tiny_tiktoken(path: Path) -> Path:
    """A real .tiktoken ranks file: every byte, then the merges that make "hello" one token."""
    merges = [b"he", b"ll", b"hell", b"hello"]
    tokens = [bytes([byte]) for byte in range(256)] + merges
    path.write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(tokens))
    )
    return path


def test_a_tiktoken_file_counts_with_its_encodings_pattern(tmp_path: Path) -> None:
    cost = tokenizer_cost(tiny_tiktoken(tmp_path / "cl100k_base.tiktoken"))
    # cl100k's pattern splits "hello hello!" into "hello", " hello", "!": the merges make "hello"
    # one token and " hello" two (no merge takes the space); the estimate says 12 / 4.
    prompt = chat("hello hello!")
    assert (cost(prompt), cost_tokens(prompt)) == (4, 3)
    assert cost(chat("hello", max_tokens=10)) == 11
    # The library's own loader is back for every other user of tiktoken.
    assert openai_public.load_tiktoken_bpe is tiktoken.load.load_tiktoken_bpe


def test_a_tiktoken_file_must_be_named_after_its_encoding(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="named after its encoding"):
        tokenizer_cost(tiny_tiktoken(tmp_path / "mine.tiktoken"))
