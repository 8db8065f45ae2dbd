"""One step of the decode loop both backends run (lib.core.hooks, lib.core.nnsight_backend): the
cache a pass returned, the check that logits stayed finite, the next token (greedy or sampled) and
the token fed to rows that already stopped."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .errors import SettingsError

if TYPE_CHECKING:
    from .loaded import LoadedModel


def cache_of(out: object) -> object:
    """The key-value cache a forward pass returned (`cache`, or `past_key_values` before transformers 5.x)."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def finite_logits(logits: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(logits).all():
        raise SettingsError(
            "The model's logits became inf or NaN during the continuation (an intervention too large?)."
        )
    return logits


def choose_next(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row [batch]: argmax, or a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def pad_id(loaded: LoadedModel, eos_ids: Sequence[int]) -> int:
    """The token fed to rows that already stopped (transformers: pad, else the first EOS)."""
    pad = getattr(loaded.model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(loaded.tokenizer, "pad_token_id", None)
    if isinstance(pad, list | tuple):
        pad = pad[0] if pad else None
    if pad is None:
        pad = next(iter(eos_ids), 0)
    return int(pad)


def kept_rows(rows: Sequence[Sequence[int]], eos_ids: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Each generated row up to and including its first EOS token (the pad tokens after it dropped)."""
    eos = {int(e) for e in eos_ids}
    return tuple(
        tuple(int(t) for t in row[: next((i + 1 for i, t in enumerate(row) if t in eos), len(row))])
        for row in rows
    )

