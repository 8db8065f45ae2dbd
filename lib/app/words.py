"""The words users type on a page and the token splits pages show, read through lib.core.tokens:
a typed word (a leading space as ' ' or '␣') becomes its tokens; a line that gives no token is
a plain message, so a page can show it beside the words that did work. The words offered first
are A's and B's predicted next tokens (`contrast_words`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..analyses.common.comparison import Comparison
from ..analyses.watch import contrast_pair
from ..core.errors import PromptError
from ..core.tokens import TokenizationDiff, TypedWord, tokenization_diff, typed_word


def typed_words(tokenizer, lines: str) -> tuple[list[TypedWord], list[PromptError]]:
    """The distinct words among the non-empty `lines` (one token or several), in order, and the
    refusal of each line that gives no token."""
    found: dict[tuple[int, ...], TypedWord] = {}
    refused: list[PromptError] = []
    for line in lines.splitlines():
        if not line:
            continue
        try:
            word = typed_word(tokenizer, line)
        except PromptError as exc:
            refused.append(exc)
            continue
        found.setdefault(word.ids, word)
    return list(found.values()), refused


def word_ids(tokenizer, text: str) -> tuple[int, ...]:
    """The token ids of one typed word (PromptError when it gives none)."""
    return typed_word(tokenizer, text).ids


def pieces(tokenizer, text: str | None) -> int:
    """How many tokens a typed word has (0 for none, or for a word the tokenizer refuses: the run
    that uses it reports why)."""
    if text is None:
        return 0
    try:
        return len(typed_word(tokenizer, text).ids)
    except PromptError:
        return 0


def token_split(tokenizer, ids_a: Sequence[int], ids_b: Sequence[int]) -> TokenizationDiff:
    """How A's and B's tokens line up (lib.core.tokens.tokenization_diff): matches, and words split
    differently."""
    return tokenization_diff(tokenizer, list(ids_a), list(ids_b))


def contrast_words(tokenizer, comparison: Comparison) -> tuple[str, ...]:
    """The words a page offers to type first: A's predicted next token and B's most likely other
    one, as typed text (`contrast_pair`; fewer than two when no such token can be typed back)."""
    return contrast_pair(tokenizer, comparison.a.final, comparison.b.final)
