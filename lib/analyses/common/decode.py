"""Greedy (or sampled) continuations: their settings, the decode loop's call into the backend, and
the continuation as tokens and text. Generation, steering and the Findings share it."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ...core.backend import Intervention
from ...core.errors import PromptError, SettingsError
from ...core.models import LoadedModel
from ...core.tokens import CharacterGroup, character_groups, readable_tokens

DEFAULT_NEW_TOKENS = 24


MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class GenerationSettings:
    """How to continue: up to `max_new_tokens`, greedy (temperature 0) or sampled with `seed`."""

    max_new_tokens: int = DEFAULT_NEW_TOKENS
    temperature: float = 0.0
    seed: int = 0

    def to_dict(self) -> dict:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature, "seed": self.seed}


DEFAULT_SETTINGS = GenerationSettings()


@dataclass(frozen=True)
class Continuation:
    """One prompt's continuation.

    prompt_token_ids: the ids the model read (chat template included)
    token_ids: the new tokens (ending with EOS when the model emitted it)
    text: the new tokens decoded by the tokenizer (special tokens skipped)
    characters: the new tokens grouped into readable characters (lib.core.tokens.character_groups)
    """

    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    text: str
    tokens: tuple[str, ...]
    characters: tuple[CharacterGroup, ...]
    stopped_at_eos: bool
    settings: GenerationSettings

    def to_dict(self) -> dict:
        return {
            "prompt_token_ids": list(self.prompt_token_ids),
            "continuation": {
                "token_ids": list(self.token_ids),
                "text": self.text,
                "tokens": list(self.tokens),
                "characters": [g.to_dict() for g in self.characters],
                "stopped_at_eos": self.stopped_at_eos,
            },
            "settings": self.settings.to_dict(),
        }


def eos_ids(loaded: LoadedModel) -> tuple[int, ...]:
    """The tokens that end a continuation: the generation config's EOS ids, else the tokenizer's."""
    eos = getattr(loaded.model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = loaded.tokenizer.eos_token_id
    if eos is None:
        return ()
    return tuple(int(e) for e in (eos if isinstance(eos, list | tuple) else [eos]))


def check_settings(loaded: LoadedModel, settings: GenerationSettings, n_prompt: int) -> None:
    """Refuse a number of new tokens out of range or beyond the context, and a bad temperature."""
    n = settings.max_new_tokens
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_NEW_TOKENS:
        raise SettingsError(
            f"The number of new tokens must be a whole number from 1 to {MAX_NEW_TOKENS} (got {n!r})."
        )
    limit = loaded.max_tokens
    if limit is not None and n_prompt + n > limit:
        raise PromptError(
            f"The prompt is {n_prompt:,} tokens and {n:,} new ones would make {n_prompt + n:,}; "
            f"{loaded.name} reads at most {limit:,}. Ask for at most {max(0, limit - n_prompt):,} new tokens."
        )
    t = settings.temperature
    if not isinstance(t, int | float) or not 0 <= t <= 100 or t != t:
        raise SettingsError(f"The temperature must be 0 (greedy) or a positive number up to 100 (got {t!r}).")


def continuation_of(loaded: LoadedModel, prompt_ids: Sequence[int], new_ids: Sequence[int],
                    settings: GenerationSettings) -> Continuation:
    """A Continuation record from ids already generated."""
    tok = loaded.tokenizer
    new = tuple(int(i) for i in new_ids)
    eos = set(eos_ids(loaded))
    return Continuation(
        prompt_token_ids=tuple(int(i) for i in prompt_ids),
        token_ids=new,
        text=tok.decode(list(new), skip_special_tokens=True),
        tokens=tuple(readable_tokens(tok, list(new))),
        characters=character_groups(tok, new),
        stopped_at_eos=bool(new) and new[-1] in eos,
        settings=settings,
    )


def generate_ids(
    loaded: LoadedModel,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    *,
    interventions: Sequence[Intervention] = (),
    step_interventions: Sequence[Intervention] = (),
    on_token: Callable[[Sequence[Sequence[int]]], None] | None = None,
) -> tuple[tuple[tuple[int, ...], ...], torch.Tensor]:
    """New token ids per row, and the next-token logits [rows, vocab] after the prompt.

    Rows must be of equal length (the steering page runs one prompt several times, one row per
    vector); each row is checked against the context first. `on_token(rows so far)` hears every
    new token (Backend.generate).
    """
    lengths = {len(p) for p in prompts}
    if len(lengths) != 1:
        raise SettingsError("Rows of one continuation run must have the same number of tokens.")
    check_settings(loaded, settings, lengths.pop())
    out = loaded.backend.generate(
        torch.tensor([list(p) for p in prompts], dtype=torch.long),
        settings.max_new_tokens,
        temperature=float(settings.temperature),
        seed=int(settings.seed),
        interventions=interventions,
        step_interventions=step_interventions,
        eos_ids=eos_ids(loaded),
        on_token=on_token,
    )
    return out.token_ids, out.first_logits

