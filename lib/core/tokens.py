"""Turning prompts into token ids (with the BOS setting) and token ids into readable text.

Readable text: a byte-level BPE token such as 'ĠðŁ' is mapped back to its bytes with the
tokenizer library's own byte table; bytes that form whole UTF-8 characters are shown as text,
the rest as hex (`<F0 9F>`); a leading space is shown as '␣', a newline as '↵', a no-break
space as '⍽' and other invisible characters (zero-width joiners, direction marks) as `<U+200D>`.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate

from .errors import PromptError, SettingsError

BOS_MODES = ("auto", "on", "off")
SPACE_MARK = "␣"
_VISIBLE = {"\n": "↵", "\t": "⇥", "\r": "⏎"}
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def encode(tokenizer, text: str, bos: str = "auto") -> list[int]:
    """Token ids of `text`. bos: `auto` = what the tokenizer does by itself, `on` = exactly one
    BOS first (when the tokenizer has one), `off` = no BOS."""
    if bos not in BOS_MODES:
        raise SettingsError(f"BOS must be one of {', '.join(BOS_MODES)}, not '{bos}'.")
    check_prompts(text)
    if bos == "auto":
        return list(tokenizer(text, add_special_tokens=True)["input_ids"])
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    bos_id = tokenizer.bos_token_id
    if bos_id is None:
        return ids
    while ids and ids[0] == bos_id:
        ids.pop(0)
    return [bos_id, *ids] if bos == "on" else ids


def prompt_names(n: int) -> tuple[str, ...]:
    """What messages call n prompts: 'The prompt', or 'Prompt A', 'Prompt B'."""
    return ("The prompt",) if n == 1 else tuple(f"Prompt {chr(ord('A') + i)}" for i in range(n))


def check_prompts(*texts: str, names: tuple[str, ...] | None = None) -> None:
    """Refuse empty or whitespace-only prompts and NUL characters, before any model work, naming
    the prompt ('Prompt B is empty'; `names` default: `prompt_names`)."""
    for text, name in zip(texts, names or prompt_names(len(texts)), strict=True):
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"{name} is empty. Type some text in it.")
        if "\x00" in text:
            raise PromptError(f"{name} contains a NUL character (\\x00); remove it.")
        check_unicode(text, name)


def check_unicode(text: str, what: str) -> None:
    """Refuse lone surrogates: what Python makes of bytes that are not UTF-8 (a command-line
    argument in another encoding); the tokenizer cannot read them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PromptError(
            f"{what} holds bytes that are not UTF-8 text (at character {exc.start}); retype it."
        ) from exc


@lru_cache(maxsize=64)
def _byte_decoder() -> dict[str, int]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return {char: byte for byte, char in bytes_to_unicode().items()}


def _is_byte_level(tokenizer) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    return decoder is not None and "ByteLevel" in repr(decoder)


def token_bytes(tokenizer, token_id: int) -> bytes:
    """The bytes a single token stands for (special tokens: their own text)."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if piece is None:
        return b""
    if token_id in set(tokenizer.all_special_ids):
        return piece.encode()
    if _is_byte_level(tokenizer):
        table = _byte_decoder()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return piece.encode()
    match = _BYTE_FALLBACK.match(piece)
    if match:
        return bytes([int(match.group(1), 16)])
    return piece.replace("▁", " ").encode()


def readable(data: bytes) -> str:
    """Bytes as text a person can read: whole UTF-8 characters as text, stray bytes as `<F0 9F>`,
    leading spaces as '␣', newlines and tabs as visible marks, other control characters as hex."""
    out: list[str] = []
    i = 0
    while i < len(data):
        for width in (1, 2, 3, 4):
            chunk = data[i : i + width]
            try:
                char = chunk.decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(_show_char(char))
            i += width
            break
        else:
            stray = bytearray()
            while i < len(data) and not _starts_char(data, i):
                stray.append(data[i])
                i += 1
            out.append("<" + " ".join(f"{b:02X}" for b in stray) + ">")
    text = "".join(out)
    stripped = text.lstrip(" ")
    return SPACE_MARK * (len(text) - len(stripped)) + stripped


def _starts_char(data: bytes, i: int) -> bool:
    for width in (1, 2, 3, 4):
        try:
            data[i : i + width].decode("utf-8")
            return True
        except UnicodeDecodeError:
            continue
    return False


def _show_char(char: str) -> str:
    """A character as shown: invisible ones (controls, no-break and zero-width spaces, joiners,
    direction marks) get a visible stand-in so a token never looks empty or reorders its row."""
    if char in _VISIBLE:
        return _VISIBLE[char]
    if ord(char) < 32 or ord(char) == 127:
        return f"<{ord(char):02X}>"
    category = unicodedata.category(char)
    if char == "\xa0":
        return "⍽"
    if (category == "Zs" and char != " ") or category in ("Cf", "Zl", "Zp", "Cc"):
        return f"<U+{ord(char):04X}>"
    return char


def readable_token(tokenizer, token_id: int) -> str:
    """One token id as readable text, e.g. 13876 → '␣Paris'."""
    return readable(token_bytes(tokenizer, token_id)) or "∅"


def readable_tokens(tokenizer, token_ids: list[int]) -> list[str]:
    return [readable_token(tokenizer, t) for t in token_ids]


@dataclass(frozen=True)
class WatchedToken:
    """A token the user named, resolved to one id."""

    text: str
    id: int
    readable: str


def single_token(tokenizer, text: str) -> WatchedToken:
    """The one token `text` stands for; a word of several tokens is refused, naming its pieces."""
    if not text:
        raise PromptError("The token is empty. Type a word, e.g. ' Paris' (with its leading space).")
    check_unicode(text, "The token")
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) != 1:
        pieces = ", ".join(repr(readable_token(tokenizer, i)) for i in ids) or "nothing"
        raise PromptError(
            f"'{text}' is {len(ids)} tokens ({pieces}), not one. Pick a single token, e.g. the first piece."
        )
    return WatchedToken(text=text, id=ids[0], readable=readable_token(tokenizer, ids[0]))


def typed_token(tokenizer, typed: str) -> WatchedToken:
    """The one token a user typed, reading the visible marks back: '␣Paris' → ' Paris', '↵' → newline."""
    marks = {SPACE_MARK: " ", **{mark: char for char, mark in _VISIBLE.items()}}
    return single_token(tokenizer, "".join(marks.get(c, c) for c in typed))


@dataclass(frozen=True)
class TypedWord:
    """A word a user named, as the tokenizer splits it: one token or several pieces.

    `ids[0]` is what a chart can follow through the logit lens (the first piece); the whole word
    is scored by teacher forcing (`lib.analyses.watch.word_scores`).
    """

    text: str  # the text the tokenizer reads ('␣' turned back into a space)
    ids: tuple[int, ...]
    pieces: tuple[str, ...]  # readable tokens, e.g. ('␣L', 'akers')

    @property
    def readable(self) -> str:
        return "".join(self.pieces)

    @property
    def first_id(self) -> int:
        return self.ids[0]

    def label(self) -> str:
        """'␣Paris', or '␣Lakers (first piece ␣L)' for a word of several tokens."""
        if len(self.ids) == 1:
            return self.readable
        return f"{self.readable} (first piece {self.pieces[0]})"


def typed_word(tokenizer, typed: str) -> TypedWord:
    """The token or tokens of a word a user typed, reading the visible marks back ('␣Lakers' →
    ' Lakers' → '␣L', 'akers'); refuses an empty word or one that gives no token."""
    marks = {SPACE_MARK: " ", **{mark: char for char, mark in _VISIBLE.items()}}
    text = "".join(marks.get(c, c) for c in typed)
    if not text:
        raise PromptError("The word is empty. Type a word, e.g. ' Paris' (with its leading space).")
    check_unicode(text, "The word")
    ids = tuple(tokenizer(text, add_special_tokens=False)["input_ids"])
    if not ids:
        raise PromptError(f"'{typed}' gives no token. Type a word, e.g. ' Paris'.")
    return TypedWord(text=text, ids=ids, pieces=tuple(readable_token(tokenizer, i) for i in ids))


def typeable(tokenizer, token_id: int) -> bool:
    """True when typing the token's readable text gives it back (`typed_token`); false for byte
    pieces such as '<F0 9F>', which a user cannot type."""
    try:
        return typed_token(tokenizer, readable_token(tokenizer, token_id)).id == token_id
    except PromptError:
        return False


_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class WordSplit:
    """A word both prompts contain but tokenize differently, e.g. 'Claire': A '␣Claire', B 'Cl', 'aire'."""

    word: str
    pieces_a: tuple[str, ...]  # readable tokens covering the word in A (a leading space included)
    pieces_b: tuple[str, ...]

    def message(self) -> str:
        a, b = " · ".join(self.pieces_a), " · ".join(self.pieces_b)
        if len(self.pieces_a) == len(self.pieces_b):
            return f"'{self.word}' is a different token in A ({a}) than in B ({b})."
        return (
            f"'{self.word}' splits differently: {_tokens(len(self.pieces_a))} in A ({a}), "
            f"{_tokens(len(self.pieces_b))} in B ({b})."
        )

    def to_dict(self) -> dict:
        return {"word": self.word, "pieces_a": list(self.pieces_a), "pieces_b": list(self.pieces_b)}


def _tokens(n: int) -> str:
    return f"{n} token" if n == 1 else f"{n} tokens"


@dataclass(frozen=True)
class TokenizationDiff:
    """How A's tokens line up with B's.

    match_a[i] is the position in B that A's token i is aligned with (the longest common runs of
    ids, difflib's matching blocks), or None where A differs; match_b likewise for B.
    """

    tokens_a: tuple[str, ...]
    ids_a: tuple[int, ...]
    tokens_b: tuple[str, ...]
    ids_b: tuple[int, ...]
    match_a: tuple[int | None, ...]
    match_b: tuple[int | None, ...]
    splits: tuple[WordSplit, ...]

    def to_dict(self) -> dict:
        return {
            "tokens_a": list(self.tokens_a),
            "ids_a": list(self.ids_a),
            "tokens_b": list(self.tokens_b),
            "ids_b": list(self.ids_b),
            "match_a": list(self.match_a),
            "match_b": list(self.match_b),
            "splits": [s.to_dict() for s in self.splits],
        }


def _word_tokens(tokenizer, ids: list[int]) -> list[tuple[str, tuple[int, ...]]]:
    """(word, ids of the tokens that cover it) for each word of the decoded ids, in order.

    Words are runs of letters/digits (`\\w+`) in the text the tokens stand for; special tokens
    cover no text. Offsets are in bytes because a token may hold part of a character.
    """
    special = set(tokenizer.all_special_ids)
    pieces = [b"" if i in special else token_bytes(tokenizer, i) for i in ids]
    ends = list(accumulate(len(p) for p in pieces))
    spans = [(i, e - len(p), e) for i, p, e in zip(ids, pieces, ends, strict=True) if p]
    text = b"".join(pieces).decode("utf-8", errors="surrogateescape")
    byte_at = [0, *accumulate(len(c.encode("utf-8", errors="surrogateescape")) for c in text)]
    out = []
    for match in _WORD.finditer(text):
        start, end = byte_at[match.start()], byte_at[match.end()]
        out.append((match.group(), tuple(i for i, s, e in spans if s < end and e > start)))
    return out


def _word_splits(tokenizer, ids_a: list[int], ids_b: list[int]) -> tuple[WordSplit, ...]:
    """Words present in both prompts whose n-th occurrences are covered by different tokens."""
    in_b: dict[str, list[tuple[int, ...]]] = {}
    for word, covering in _word_tokens(tokenizer, ids_b):
        in_b.setdefault(word, []).append(covering)
    seen_in_a: dict[str, int] = {}
    splits: list[WordSplit] = []
    for word, covering in _word_tokens(tokenizer, ids_a):
        n = seen_in_a[word] = seen_in_a.get(word, -1) + 1
        if n >= len(in_b.get(word, ())) or in_b[word][n] == covering:
            continue
        split = WordSplit(word, tuple(readable_tokens(tokenizer, list(covering))),
                          tuple(readable_tokens(tokenizer, list(in_b[word][n]))))
        if split not in splits:
            splits.append(split)
    return tuple(splits)


def align(
    ids_a: Sequence[int], ids_b: Sequence[int]
) -> tuple[tuple[int | None, ...], tuple[int | None, ...]]:
    """(match_a, match_b): for each token of A the position in B it lines up with (the longest
    common runs of ids, difflib's matching blocks), or None where A differs; likewise for B."""
    match_a: list[int | None] = [None] * len(ids_a)
    match_b: list[int | None] = [None] * len(ids_b)
    blocks = difflib.SequenceMatcher(a=list(ids_a), b=list(ids_b), autojunk=False).get_matching_blocks()
    for block in blocks:
        for offset in range(block.size):
            match_a[block.a + offset] = block.b + offset
            match_b[block.b + offset] = block.a + offset
    return tuple(match_a), tuple(match_b)


def tokenization_diff(tokenizer, ids_a: list[int], ids_b: list[int]) -> TokenizationDiff:
    """Align the token ids of A and B and name the words they split differently."""
    match_a, match_b = align(ids_a, ids_b)
    return TokenizationDiff(
        tokens_a=tuple(readable_tokens(tokenizer, ids_a)),
        ids_a=tuple(ids_a),
        tokens_b=tuple(readable_tokens(tokenizer, ids_b)),
        ids_b=tuple(ids_b),
        match_a=match_a,
        match_b=match_b,
        splits=_word_splits(tokenizer, list(ids_a), list(ids_b)),
    )


MAX_CHARACTER_PIECES = 8  # a UTF-8 character is at most 4 bytes; pieces may also straddle two


@dataclass(frozen=True)
class CharacterGroup:
    """Consecutive tokens shown together: tokens [start, end) and the readable text they make.

    A token whose bytes are a whole number of characters is a group of one (`text` = its readable
    token); byte pieces that only together form a character (an emoji of 2–4 pieces) are one group,
    e.g. text '🐠' with pieces ('<F0 9F>', '<90>', '<A0>').
    """

    start: int
    end: int
    text: str
    pieces: tuple[str, ...]

    @property
    def joined(self) -> bool:
        return self.end - self.start > 1

    def to_dict(self) -> dict:
        return {"start": self.start, "end": self.end, "text": self.text, "pieces": list(self.pieces)}


def _decoded(tokenizer, ids: list[int]) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _whole(tokenizer, ids: list[int]) -> bool:
    """True when the tokenizer's decoder turns `ids` into whole characters (no U+FFFD it did not
    get from the tokens' own text)."""
    return "\ufffd" not in _decoded(tokenizer, ids)


def character_groups(tokenizer, token_ids: list[int] | tuple[int, ...]) -> tuple[CharacterGroup, ...]:
    """Split `token_ids` into groups that each decode to whole characters, with the tokenizer's own
    decoder: a token that decodes to a partial character (U+FFFD) is joined with the next tokens
    until their decoding is whole (at most MAX_CHARACTER_PIECES pieces; a piece that never
    completes stays alone, shown in hex)."""
    ids = [int(i) for i in token_ids]
    groups: list[CharacterGroup] = []
    i = 0
    while i < len(ids):
        end = i + 1
        if not _whole(tokenizer, ids[i:end]):
            for j in range(i + 2, min(len(ids), i + MAX_CHARACTER_PIECES) + 1):
                if _whole(tokenizer, ids[i:j]):
                    end = j
                    break
        pieces = tuple(readable_tokens(tokenizer, ids[i:end]))
        text = readable(_decoded(tokenizer, ids[i:end]).encode("utf-8")) if end - i > 1 else pieces[0]
        groups.append(CharacterGroup(i, end, text or "∅", pieces))
        i = end
    return tuple(groups)


def readable_text(tokenizer, token_ids: list[int] | tuple[int, ...]) -> str:
    """Token ids as one line of readable text, characters joined across byte pieces, pieces that
    form no character in hex."""
    return "".join(g.text for g in character_groups(tokenizer, token_ids))
