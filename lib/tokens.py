"""Turning prompts into token ids (with the BOS setting) and token ids into readable text.

Readable text: a byte-level BPE token such as 'ĠðŁ' is mapped back to its bytes with the
tokenizer library's own byte table; bytes that form whole UTF-8 characters are shown as text,
the rest as hex (`<F0 9F>`); a leading space is shown as '␣' and a newline as '↵'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from lib.errors import PromptError, SettingsError

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


def check_prompts(*texts: str) -> None:
    """Refuse empty or whitespace-only prompts and NUL characters, before any model work."""
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise PromptError("A prompt is empty. Type some text in both prompts.")
        if "\x00" in text:
            raise PromptError("A prompt contains a NUL character (\\x00); remove it.")


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
    if char in _VISIBLE:
        return _VISIBLE[char]
    if ord(char) < 32 or ord(char) == 127:
        return f"<{ord(char):02X}>"
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
    """The one token `text` stands for; a word that splits into several tokens is refused, naming its pieces."""
    if not text:
        raise PromptError("The token is empty. Type a word, e.g. ' Paris' (with its leading space).")
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if len(ids) != 1:
        pieces = ", ".join(repr(readable_token(tokenizer, i)) for i in ids) or "nothing"
        raise PromptError(
            f"'{text}' is {len(ids)} tokens ({pieces}), not one. Pick a single token, e.g. the first piece."
        )
    return WatchedToken(text=text, id=ids[0], readable=readable_token(tokenizer, ids[0]))
