"""Tokens: BOS handling and readable text, on the tiny tokenizer and the embedded one."""

from __future__ import annotations

import pytest

from lib.core.errors import PromptError, SettingsError
from lib.core.tokens import encode, readable, readable_tokens, single_token


def test_readable_marks_leading_space_and_newline():
    assert readable(b" Paris") == "␣Paris"
    assert readable(b"\n") == "↵"
    assert readable(b"a\tb") == "a⇥b"


def test_readable_shows_partial_utf8_as_hex_and_whole_characters_as_text():
    horse = "🐴".encode()  # F0 9F 90 B4
    assert readable(horse[:2]) == "<F0 9F>"
    assert readable(horse) == "🐴"
    assert readable(b"caf\xc3\xa9") == "café"
    assert readable(b"\x01") == "<01>"


def test_readable_makes_invisible_characters_visible():
    assert readable("\xa0".encode()) == "⍽"
    assert readable("a\u200db".encode()) == "a<U+200D>b"
    assert readable("\u200f".encode()) == "<U+200F>"
    assert readable("e\u0301".encode()) == "e\u0301"  # a combining mark stays with its letter


def test_byte_level_tokens_decode_back_to_the_prompt(tiny_tokenizer):
    text = "Is there a seahorse emoji? 🐴🌊"
    ids = encode(tiny_tokenizer, text, "off")
    from lib.core.tokens import token_bytes

    assert b"".join(token_bytes(tiny_tokenizer, i) for i in ids).decode() == text


def test_bos_on_adds_exactly_one_bos_and_off_removes_it(tiny_tokenizer):
    bos = tiny_tokenizer.bos_token_id
    on = encode(tiny_tokenizer, "the lazy dog", "on")
    off = encode(tiny_tokenizer, "the lazy dog", "off")
    assert on[0] == bos and on.count(bos) == 1
    assert bos not in off
    assert on[1:] == off
    assert encode(tiny_tokenizer, "<bos>the lazy dog", "on").count(bos) == 1


def test_bad_bos_mode_and_empty_prompt_are_refused(tiny_tokenizer):
    with pytest.raises(SettingsError):
        encode(tiny_tokenizer, "x", "maybe")
    with pytest.raises(PromptError, match="empty"):
        encode(tiny_tokenizer, " \n\t ", "auto")


def test_single_token_refuses_a_word_of_several_tokens_naming_its_pieces(real_model):
    tok = real_model.tokenizer
    assert single_token(tok, " Paris").readable == "␣Paris"
    with pytest.raises(PromptError, match="'Cl', 'aire'"):
        single_token(tok, "Claire")


def test_embedded_tokenizer_splits_emoji_into_visible_bytes(real_model):
    ids = encode(real_model.tokenizer, "emoji? 🦄", "off")
    shown = readable_tokens(real_model.tokenizer, ids)
    assert "␣<F0 9F>" in shown
    assert all("\ufffd" not in s for s in shown)
