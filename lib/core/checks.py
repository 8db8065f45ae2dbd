"""Checks of a user's settings that several analyses share: each refuses with a plain SettingsError."""

from __future__ import annotations

from collections.abc import Sequence

from .capture import Capture
from .errors import ModelPairError, SettingsError
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


def has_bos(loaded: LoadedModel, cap: Capture | Sequence[int]) -> bool:
    """Whether a capture (or its token ids) starts with the tokenizer's BOS token."""
    ids = cap.token_ids if isinstance(cap, Capture) else cap
    bos_id = loaded.tokenizer.bos_token_id
    return bos_id is not None and len(ids) > 0 and ids[0] == bos_id


def resolve_position(position: int, n_tokens: int, label: str) -> int:
    """A position as a 0-based index (negative counts from the end: -1 = last), or SettingsError."""
    if not -n_tokens <= position < n_tokens:
        raise SettingsError(
            f"Position {position} is outside prompt {label}, which has {n_tokens} tokens (0…{n_tokens - 1})."
        )
    return position % n_tokens


def check_same_residuals(cap_a: Capture, cap_b: Capture) -> None:
    """Two runs whose residual streams are compared or exchanged layer by layer (two models on one
    prompt) must have as many layers and as wide a residual, or ModelPairError says which differs."""
    (layers_a, _, width_a), (layers_b, _, width_b) = cap_a.residual.shape, cap_b.residual.shape
    if layers_a != layers_b:
        raise ModelPairError(
            f"The two models have {layers_a - 1} and {layers_b - 1} layers, so their residual streams "
            "cannot be compared or patched layer by layer."
        )
    if width_a != width_b:
        raise ModelPairError(
            f"The two models' residual streams are {width_a} and {width_b} wide, so they cannot be "
            "compared or patched into each other."
        )


def check_same_tokenizer(model1: LoadedModel, model2: LoadedModel) -> None:
    """Both models must give every token the same id: the smaller vocabulary must sit inside the
    larger (a fine-tune may add tokens at the end). Raises `ModelPairError` naming a token that differs."""
    if model1.tokenizer is model2.tokenizer:
        return
    vocab1, vocab2 = model1.tokenizer.get_vocab(), model2.tokenizer.get_vocab()
    small, large = (vocab1, vocab2) if len(vocab1) <= len(vocab2) else (vocab2, vocab1)
    differ = [token for token, i in small.items() if large.get(token) != i]
    if differ:
        token = min(differ, key=small.__getitem__)
        raise ModelPairError(
            f"{model1.name} and {model2.name} do not share a tokenizer: {len(differ):,} of "
            f"{len(small):,} tokens differ (e.g. {token!r} is {vocab1.get(token, 'absent')} in model 1 "
            f"and {vocab2.get(token, 'absent')} in model 2). Comparing two models reads one token "
            "sequence through both, so they need the same tokenizer — a model and its fine-tune share one."
        )

