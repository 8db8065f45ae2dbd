"""Watched tokens: how likely chosen tokens are at every layer, through the logit lens (ecco's "rank").

For a token t at layer ℓ and one position, with lens logits z = softcap(W_U · final_norm(h_ℓ)):

- logit  z_t (after any soft-cap, so differences are the ones the model's softmax sees)
- prob   softmax(z)_t
- rank   1 + #{u : z_u > z_t}   (1 = the lens's top token; needs the whole vocabulary)

and the logit difference of two tokens, `z_t1 − z_t2` (the IOI metric: " Claire" − " Mary").
Cells are reduced to these numbers chunk by chunk (`lens.lens_logits_chunks`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.capture import Capture
from ..core.checks import resolve_position
from ..core.errors import PromptError
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.tokens import readable_token, typeable
from .common.lens import TokenProb, lens_logits_chunks, resolve_lens, vocabulary_rank
from .common.lenses import Lens
from .common.pieces import forced_piece_logprobs


@dataclass(frozen=True)
class Trajectory(Record):
    """One token at one position of one prompt, for every layer 0…L."""

    token: str
    id: int
    logit: tuple[float, ...]
    prob: tuple[float, ...]
    rank: tuple[int, ...]


@dataclass(frozen=True)
class Watch(Record):
    """The watched tokens in A (at `position_a`) and in B (at `position_b`); a[i], b[i]: the same token."""

    position_a: int
    position_b: int
    a: tuple[Trajectory, ...]
    b: tuple[Trajectory, ...]


def contrast_pair(tokenizer, top_a: Sequence[TokenProb], top_b: Sequence[TokenProb]) -> tuple[str, ...]:
    """The natural tokens to watch or to take the logit difference of: A's most likely token and
    B's most likely other one (else A's next), as readable text, skipping tokens a user could not
    type back (`tokens.typeable`). Fewer than two when the lists hold fewer such tokens."""
    typeable_a = [t for t in top_a if typeable(tokenizer, t.id)]
    typeable_b = [t for t in top_b if typeable(tokenizer, t.id)]
    first = typeable_a[:1]
    others = [t for t in typeable_b + typeable_a[1:] if not first or t.id != first[0].id]
    return tuple(t.token for t in first + others[:1])


def logit_difference(first: Trajectory, second: Trajectory) -> tuple[float, ...]:
    """Per layer, logit[first] − logit[second] (both trajectories from the same prompt)."""
    return tuple(x - y for x, y in zip(first.logit, second.logit, strict=True))


def trajectories(
    loaded: LoadedModel, residual: torch.Tensor, token_ids: Sequence[int], position: int = -1,
    lens: Lens | str | None = None,
) -> tuple[Trajectory, ...]:
    """Per-layer logit, prob and rank of each of `token_ids` at `position` of residual [L+1, pos, d],
    read through `lens` (lib.analyses.common.lenses; None: the logit lens)."""
    if not token_ids:
        return ()
    pos = position % residual.shape[1]
    ids = torch.tensor(list(token_ids), dtype=torch.long)
    logits, probs, ranks = [], [], []
    cells = [(l, pos) for l in range(residual.shape[0])]
    for _, chunk in lens_logits_chunks(loaded, residual, cells, resolve_lens(loaded, lens)):
        chosen = chunk[:, ids]  # [n, tokens]
        logits.append(chosen)
        probs.append(torch.log_softmax(chunk, -1)[:, ids].exp())
        ranks.append(vocabulary_rank(chunk, ids))
    logit, prob, rank = (torch.cat(parts).T.tolist() for parts in (logits, probs, ranks))
    return tuple(
        Trajectory(readable_token(loaded.tokenizer, t), t, tuple(lo), tuple(p), tuple(map(int, ra)))
        for t, lo, p, ra in zip(ids.tolist(), logit, prob, rank, strict=True)
    )


def watch_tokens(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    token_ids: Sequence[int],
    *,
    position_a: int = -1,
    position_b: int = -1,
    lens: Lens | str | None = None,
) -> Watch:
    """Trajectories of the same tokens in A and in B (resolve typed words with `tokens.typed_word`;
    a word of several tokens is followed by its first piece, scored whole by `word_scores`)."""
    pos_a = resolve_position(position_a, cap_a.n_tokens, "A")
    pos_b = resolve_position(position_b, cap_b.n_tokens, "B")
    return Watch(
        position_a=pos_a,
        position_b=pos_b,
        a=trajectories(loaded, cap_a.residual, token_ids, pos_a, lens),
        b=trajectories(loaded, cap_b.residual, token_ids, pos_b, lens),
    )


@dataclass(frozen=True)
class WordScore(Record):
    """A whole word (one or more tokens) after one prompt, scored at every layer by teacher forcing:

        score_ℓ(w) = log p_ℓ(w₁ | h_ℓ) + Σ_{j=2…n} log p_L(w_j | prompt, w₁ … w_{j−1})

    The first piece w₁ is read through the logit lens at layer ℓ; the later pieces are read at the
    final layer L, with the pieces before them appended to the prompt (one forward pass per word of
    several pieces, whatever the number of layers). At ℓ = L the score is the model's own
    log-probability of the whole word; for a one-token word it is that token's lens log-probability.
    Natural log; `prob` = exp(score).
    """

    word: str  # readable, e.g. '␣Lakers'
    ids: tuple[int, ...]
    pieces: tuple[str, ...]
    later: float  # Σ_{j≥2} log p_L(w_j | …), the same at every layer; 0 for one piece
    logprob: tuple[float, ...]  # [L+1]

    @property
    def prob(self) -> tuple[float, ...]:
        return tuple(math.exp(v) for v in self.logprob)


@dataclass(frozen=True)
class WordWatch(Record):
    """The same words scored after A (a[i]) and after B (b[i]), at each prompt's last position."""

    a: tuple[WordScore, ...]
    b: tuple[WordScore, ...]


def word_score(
    loaded: LoadedModel, cap: Capture, ids: Sequence[int], lens: Lens | str | None = None
) -> WordScore:
    """`WordScore` of the word `ids` right after the prompt of `cap` (its last position), its first
    piece read through `lens` (None: the logit lens)."""
    if not ids:
        raise PromptError("The word gives no token.")
    ids = tuple(int(i) for i in ids)
    pos = cap.n_tokens - 1
    first: list[float] = []
    cells = [(layer, pos) for layer in range(cap.residual.shape[0])]
    for _, chunk in lens_logits_chunks(loaded, cap.residual, cells, resolve_lens(loaded, lens)):
        first.extend(torch.log_softmax(chunk.float(), -1)[:, ids[0]].tolist())
    later = float(forced_piece_logprobs(loaded, cap, ids)[1:].sum()) if len(ids) > 1 else 0.0
    pieces = tuple(readable_token(loaded.tokenizer, i) for i in ids)
    return WordScore("".join(pieces), ids, pieces, later, tuple(v + later for v in first))


def word_scores(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, words: Sequence[Sequence[int]],
    lens: Lens | str | None = None,
) -> WordWatch:
    """`word_score` of each word (its token ids) after A and after B."""
    lens = resolve_lens(loaded, lens)
    return WordWatch(
        a=tuple(word_score(loaded, cap_a, ids, lens) for ids in words),
        b=tuple(word_score(loaded, cap_b, ids, lens) for ids in words),
    )
