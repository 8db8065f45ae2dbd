"""Checks of a user's settings that several analyses share: each refuses with a plain SettingsError."""

from __future__ import annotations

from .capture import Capture
from .errors import SettingsError
from .models import LoadedModel


def check_top_k(loaded: LoadedModel, top_k: int) -> int:
    """top-k must be a whole number from 1 to the vocabulary size."""
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise SettingsError(f"top-k must be a whole number of at least 1 (got {top_k!r}).")
    if top_k > loaded.vocab_size:
        raise SettingsError(
            f"top-k is {top_k:,} but the vocabulary has only {loaded.vocab_size:,} tokens."
        )
    return top_k


def has_bos(loaded: LoadedModel, cap: Capture) -> bool:
    bos_id = loaded.tokenizer.bos_token_id
    return bos_id is not None and len(cap.token_ids) > 0 and cap.token_ids[0] == bos_id


def resolve_position(position: int, n_tokens: int, label: str) -> int:
    """A position as a 0-based index (negative counts from the end: -1 = last), or SettingsError."""
    if not -n_tokens <= position < n_tokens:
        raise SettingsError(
            f"Position {position} is outside prompt {label}, which has {n_tokens} tokens (0…{n_tokens - 1})."
        )
    return position % n_tokens
