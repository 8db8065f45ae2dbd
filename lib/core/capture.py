"""One forward pass per prompt that records the residual stream at every layer boundary.

Residual ℓ is the input of block ℓ+1 (ℓ = 0 is the embedding output, after any embedding scale
such as Gemma's √d) and residual L is the output of the last block, *before* the final norm.
They are read at the named residual sites (lib.core.sites) through the model's backend, not from
`output_hidden_states`, because HF's last hidden state is often already normalized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from .backend import Run
from .chat import Chat, Encoded, encode_prompt
from .errors import PromptError
from .models import LoadedModel
from .sites import residual_sites
from .tokens import readable_tokens


def run_model(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    """Forward `input_ids` [batch, pos]; returns the model's own logits at the last position
    [batch, vocab] (float32)."""
    return loaded.backend.run(input_ids).logits


def check_length(loaded: LoadedModel, n_tokens: int, name: str = "The prompt") -> None:
    """Refuse inputs longer than the model's context, saying the limit (and which prompt: `name`)."""
    limit = loaded.max_tokens
    if limit is not None and n_tokens > limit:
        raise PromptError(
            f"{name} is {n_tokens:,} tokens; {loaded.name} reads at most {limit:,}. Shorten it."
        )


def prompt_ids(
    loaded: LoadedModel, text: str, bos: str = "auto", chat: Chat | None = None,
    continuation: tuple[int, ...] = (),
) -> Encoded:
    """The ids (and roles) the model reads for `text`, refused when empty or when they, with
    `continuation` appended, are longer than the model's context."""
    encoded = encode_prompt(loaded.tokenizer, text, bos, chat)
    if not encoded.ids:
        raise PromptError("The prompt gives no tokens.")
    check_length(loaded, len(encoded.ids) + len(continuation))
    return encoded


@dataclass(frozen=True)
class Capture:
    """What one forward pass of one prompt leaves behind.

    residual: [L+1, pos, d_model] tensor, residual ℓ at every position (model dtype, model device);
        None when the residual stream stayed where the model runs (NDIF, `keep_residual=False`)
    final_logits: [vocab] float32, the model's own next-token logits at the last position
    chat: the chat settings the prompt was read with (None: raw text)
    roles: per token, 'template' / 'system' / 'user' / 'prefill' (lib.core.chat) or 'generated'
        for the continuation ids appended after the prompt
    """

    text: str
    bos: str
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    residual: torch.Tensor | None
    final_logits: torch.Tensor
    chat: Chat | None = None
    roles: tuple[str, ...] = ()

    @property
    def n_tokens(self) -> int:
        return len(self.token_ids)


def capture(
    loaded: LoadedModel,
    text: str,
    bos: str = "auto",
    chat: Chat | None = None,
    continuation: tuple[int, ...] = (),
    *,
    keep_residual: bool = True,
) -> Capture:
    """Run `text` once and keep the residual stream at every layer boundary and position.

    chat: read the prompt as a chat message (lib.core.chat); None reads it as raw text.
    continuation: token ids appended after the prompt's (a continuation the model generated,
    kept as ids so it is exactly what the model emitted, never re-tokenized text).
    keep_residual=False: for a model on NDIF, keep only the tokens and the model's own logits
    (`residual` is None); views that support it then reduce the residual stream where it is
    (e.g. `lens_grid`, `capture_distances`) instead of fetching it.
    """
    encoded = prompt_ids(loaded, text, bos, chat, continuation)
    ids = [*encoded.ids, *(int(i) for i in continuation)]
    if keep_residual:
        residual, final_logits = _residual_run(loaded, ids)
    else:
        input_ids = torch.tensor([ids], dtype=torch.long)
        residual, final_logits = None, loaded.backend.run_each([input_ids], reduce=last_logits)
    return Capture(
        text=text,
        bos=bos,
        token_ids=tuple(ids),
        tokens=tuple(readable_tokens(loaded.tokenizer, ids)),
        residual=residual,
        final_logits=final_logits,
        chat=chat,
        roles=(*encoded.roles, *("generated",) * len(continuation)),
    )


def extend(loaded: LoadedModel, cap: Capture, ids: Sequence[int]) -> Capture:
    """`cap` with token `ids` appended after its tokens (role 'generated'), run again in one pass:
    e.g. a teacher-forced context, the prompt followed by the first pieces of a word."""
    token_ids = (*cap.token_ids, *(int(i) for i in ids))
    check_length(loaded, len(token_ids))
    residual, final_logits = _residual_run(loaded, token_ids)
    return replace(
        cap,
        token_ids=token_ids,
        tokens=tuple(readable_tokens(loaded.tokenizer, token_ids)),
        residual=residual,
        final_logits=final_logits,
        roles=(*cap.roles, *("generated",) * len(ids)),
    )


def _residual_run(loaded: LoadedModel, ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass over `ids`: the residual [L+1, pos, d_model] at every site and the last logits [vocab]."""
    sites = residual_sites(loaded.n_layers)
    run = loaded.backend.run(torch.tensor([list(ids)], dtype=torch.long), sites=sites)
    return torch.stack([run.activations[site][0] for site in sites]), run.logits[0]


def last_logits(runs: list[Run]) -> torch.Tensor:
    """The model's own next-token logits [vocab] of a single run (a reduction)."""
    return runs[0].logits[0]
