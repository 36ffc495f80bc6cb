"""Closest-name suggestions for misspelt keys and names ("did you mean 'balancer'?")."""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher

# difflib's own default for get_close_matches: below this similarity a "suggestion" is mostly noise.
_MIN_SIMILARITY = 0.6


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The one candidate clearly closest to `word`, or None.

    A case-insensitive exact match wins outright. Otherwise the most similar candidate is suggested
    only when it is similar enough and no other candidate is just as close: when 'fraud-v3' is as
    near to 'fraud-v1' as to 'fraud-v2', naming one of them would be a guess.
    """
    options = sorted(set(candidates))
    for option in options:
        if option.lower() == word.lower():
            return option
    scored = sorted(
        ((SequenceMatcher(None, word.lower(), option.lower()).ratio(), option) for option in options),
        reverse=True,
    )
    if not scored or scored[0][0] < _MIN_SIMILARITY:
        return None
    if len(scored) > 1 and scored[1][0] == scored[0][0]:
        return None
    return scored[0][1]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when there is a clear suggestion, else an empty string."""
    match = closest(word, candidates)
    return f" (did you mean {match!r}?)" if match is not None else ""
