"""Teacher-forced word pieces: the log-probability of each piece of a word given the prompt and the
pieces before it, read at the final layer (the whole-word scores of Watch and Patching).

    log p(w) = Σ_j log p(w_j | prompt, w_1 … w_{j−1})
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...core.capture import Capture
from ...core.models import LoadedModel


def forced_context(token_ids: Sequence[int], ids: Sequence[int]) -> list[int]:
    """The teacher-forced input for scoring the word `ids` after `token_ids`: the prompt and every
    piece but the last, so that the logits at positions n−1 … n+k−2 predict pieces 1 … k."""
    return [*token_ids, *ids[:-1]]


def piece_logprobs(logits: torch.Tensor, ids: Sequence[int]) -> torch.Tensor:
    """Teacher forcing: log softmax(logits[..., j, :])[ids[j]] for each piece j (natural log,
    float64), where row j of `logits` [..., len(ids), vocab] is read right before piece j → [..., len(ids)].
    Their sum is the word's log-probability."""
    rows = torch.arange(len(ids), device=logits.device)
    pieces = torch.tensor([int(i) for i in ids], device=logits.device)
    return torch.log_softmax(logits.double(), -1)[..., rows, pieces]


def forced_piece_logprobs(loaded: LoadedModel, cap: Capture, ids: Sequence[int]) -> torch.Tensor:
    """log p_L(w_j | prompt, w_1 … w_{j−1}) of each piece of the word `ids` right after the prompt
    of `cap`, read at the final layer (the model's own logits) of one pass over `forced_context`
    (none for a one-token word: the capture's own last logits) → [len(ids)] float64."""
    if len(ids) == 1:
        return piece_logprobs(cap.final_logits[None], ids)
    context = torch.tensor([forced_context(cap.token_ids, ids)], dtype=torch.long)
    logits = loaded.backend.run(context, all_positions=True).logits[0]  # [n + pieces − 1, vocab]
    return piece_logprobs(logits[cap.n_tokens - 1 :], ids)

