"""Aligning A's tokens with B's, naming words that split differently, and reading typed tokens."""

from __future__ import annotations

import pytest

from lib.core.errors import PromptError
from lib.core.tokens import encode, single_token, tokenization_diff, typeable, typed_token


def diff(tok, a: str, b: str, bos: str = "on"):
    return tokenization_diff(tok, encode(tok, a, bos), encode(tok, b, bos))


def test_identical_prompts_align_everywhere_and_split_nothing(tiny_tokenizer):
    d = diff(tiny_tokenizer, "Claire and Mary went to the shops", "Claire and Mary went to the shops")
    assert d.match_a == tuple(range(len(d.ids_a)))
    assert d.match_b == tuple(range(len(d.ids_b)))
    assert d.splits == ()


def test_one_changed_word_is_the_only_unaligned_token(tiny_tokenizer):
    d = diff(tiny_tokenizer, "The capital of France is", "The capital of Italy is")
    unaligned_a = [d.tokens_a[i] for i, m in enumerate(d.match_a) if m is None]
    unaligned_b = [d.tokens_b[i] for i, m in enumerate(d.match_b) if m is None]
    assert unaligned_a == ["␣France"] and unaligned_b == ["␣Italy"]
    assert all(d.ids_a[i] == d.ids_b[m] for i, m in enumerate(d.match_a) if m is not None)


def test_word_split_into_more_tokens_is_called_out(tiny_tokenizer):
    # the tiny tokenizer knows ' Paris' as one token but splits 'Paris' into 'Pa', 'ris'
    d = diff(tiny_tokenizer, "The capital is Paris", "Paris is the capital")
    [split] = d.splits
    assert (split.word, split.pieces_a, split.pieces_b) == ("Paris", ("␣Paris",), ("Pa", "ris"))
    assert "splits differently" in split.message()
    assert "1 token in A" in split.message() and "2 tokens in B" in split.message()


def test_word_that_is_a_different_single_token_is_called_out(tiny_tokenizer):
    d = diff(tiny_tokenizer, "Then Claire and Mary", "Claire and Mary")
    assert [(s.word, s.pieces_a, s.pieces_b) for s in d.splits] == [("Claire", ("␣Claire",), ("Claire",))]
    assert "different token" in d.splits[0].message()


def test_bos_covers_no_word(tiny_tokenizer):
    d = diff(tiny_tokenizer, "Paris is", "Paris is", bos="on")
    d_off = tokenization_diff(tiny_tokenizer, encode(tiny_tokenizer, "Paris is", "on"),
                              encode(tiny_tokenizer, "Paris is", "off"))
    assert d.splits == () and d_off.splits == ()
    assert d_off.match_a[0] is None  # the BOS has no partner in B


def test_typed_token_reads_visible_marks_back(tiny_tokenizer):
    assert typed_token(tiny_tokenizer, "␣Paris").id == single_token(tiny_tokenizer, " Paris").id
    assert typed_token(tiny_tokenizer, " Paris").id == single_token(tiny_tokenizer, " Paris").id


def test_typed_multi_token_word_is_refused_naming_its_pieces(tiny_tokenizer):
    with pytest.raises(PromptError, match=r"2 tokens \('Pa', 'ris'\)"):
        typed_token(tiny_tokenizer, "Paris")


def test_byte_pieces_cannot_be_typed_back_but_words_can(tiny_tokenizer):
    pieces = tiny_tokenizer("😀", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1 and not any(typeable(tiny_tokenizer, i) for i in pieces)
    assert typeable(tiny_tokenizer, single_token(tiny_tokenizer, " Paris").id)
