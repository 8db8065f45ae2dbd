"""The logit lens: what the model would predict if its computation stopped at layer ℓ.

For a residual h_ℓ at one position, `p_ℓ = softmax(softcap(W_U · final_norm(h_ℓ)))` — the final
norm is recomputed on h_ℓ itself (nostalgebraist 2020, "interpreting GPT: the logit lens"). At
ℓ = L this is exactly the model's own next-token distribution.

Cells are computed in chunks and reduced to top-k (plus entropy) at once, so memory stays at
`chunk × vocab` floats whatever the number of layers and positions: a layers × positions × vocab
tensor is never built.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from lib.models import LoadedModel
from lib.tokens import readable_token

CHUNK_FLOATS = 1 << 24  # at most 16M logits (64 MB in float32) alive at once


@dataclass(frozen=True)
class TokenProb:
    """One entry of a top-k list."""

    token: str
    id: int
    prob: float

    def to_dict(self) -> dict:
        return {"token": self.token, "id": self.id, "prob": self.prob}


@dataclass(frozen=True)
class LensCell:
    """The lens at one (layer, position): its top-k and the entropy of the whole distribution (nats)."""

    layer: int
    position: int
    top: tuple[TokenProb, ...]
    entropy: float

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "position": self.position,
            "top": [t.to_dict() for t in self.top],
            "entropy": self.entropy,
        }


def chunk_size(vocab_size: int) -> int:
    """How many cells one chunk holds."""
    return max(1, CHUNK_FLOATS // max(1, vocab_size))


def lens_logits_chunks(
    loaded: LoadedModel, residual: torch.Tensor, cells: Sequence[tuple[int, int]]
) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """Yield (cells, logits [n, vocab] float32) chunk by chunk for `cells` = [(layer, position)…]
    of a residual tensor [L+1, pos, d]."""
    step = chunk_size(loaded.vocab_size)
    arch = loaded.architecture
    for start in range(0, len(cells), step):
        chunk = list(cells[start : start + step])
        layers = torch.tensor([c[0] for c in chunk])
        positions = torch.tensor([c[1] for c in chunk])
        hidden = residual[layers, positions].to(loaded.device)
        with loaded.lock, torch.inference_mode():
            yield chunk, arch.logits(hidden)


def top_k_table(loaded: LoadedModel, logits: torch.Tensor, k: int) -> list[tuple[TokenProb, ...]]:
    """Top-k (readable token, id, probability) for each row of logits [n, vocab]."""
    probs = torch.softmax(logits.float(), dim=-1)
    values, ids = probs.topk(min(k, probs.shape[-1]), dim=-1)
    tok = loaded.tokenizer
    return [
        tuple(
            TokenProb(readable_token(tok, int(i)), int(i), float(v))
            for v, i in zip(row_v.tolist(), row_i.tolist(), strict=True)
        )
        for row_v, row_i in zip(values, ids, strict=True)
    ]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ p log p in nats, per row of logits [n, vocab]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)


def lens_cells(
    loaded: LoadedModel, residual: torch.Tensor, cells: Sequence[tuple[int, int]], k: int
) -> list[LensCell]:
    """The lens top-k at each (layer, position) in `cells`, in the order given."""
    out: list[LensCell] = []
    for chunk, logits in lens_logits_chunks(loaded, residual, cells):
        tops = top_k_table(loaded, logits, k)
        ents = entropy(logits).tolist()
        out.extend(
            LensCell(layer=l, position=p, top=t, entropy=e)
            for (l, p), t, e in zip(chunk, tops, ents, strict=True)
        )
    return out


def lens_column(
    loaded: LoadedModel, residual: torch.Tensor, position: int, k: int
) -> list[LensCell]:
    """The lens at one position for every layer 0…L (position may be negative: -1 = last)."""
    pos = position % residual.shape[1]
    return lens_cells(loaded, residual, [(l, pos) for l in range(residual.shape[0])], k)
