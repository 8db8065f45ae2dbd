"""The logit lens: what the model would predict if its computation stopped at layer ℓ.

For a residual h_ℓ at one position, `p_ℓ = softmax(softcap(W_U · final_norm(h_ℓ)))` — the final
norm is recomputed on h_ℓ itself (nostalgebraist 2020, "interpreting GPT: the logit lens"). At
ℓ = L this is exactly the model's own next-token distribution. Every function here takes an
optional `lens` (lib.analyses.common.lenses: tuned or Jacobian) whose per-layer transform T_ℓ is applied
first: p_ℓ = softmax(softcap(W_U · final_norm(T_ℓ(h_ℓ)))); None is the logit lens.

Cells are computed in chunks and reduced to top-k (plus entropy) at once, so memory stays at
`chunk × vocab` floats whatever the number of layers and positions: a layers × positions × vocab
tensor is never built.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial

import torch

from ...core.architecture import Architecture
from ...core.backend import Run
from ...core.capture import Capture
from ...core.errors import SettingsError
from ...core.models import LoadedModel
from ...core.records import Record
from ...core.sites import Site, residual_sites
from ...core.tokens import readable_token
from .lenses import Lens, lens_for

Cells = tuple[tuple[int, int], ...]  # (layer, position) pairs
CHUNK_FLOATS = 1 << 24  # at most 16M logits (64 MB in float32) alive at once


@dataclass(frozen=True)
class TokenProb(Record):
    """One entry of a top-k list."""

    token: str
    id: int
    prob: float


@dataclass(frozen=True)
class LensCell(Record):
    """The lens at one (layer, position): its top-k and the entropy of the whole distribution in bits."""

    layer: int
    position: int
    top: tuple[TokenProb, ...]
    entropy_bits: float


def chunk_size(vocab_size: int) -> int:
    """How many cells one chunk holds."""
    return max(1, CHUNK_FLOATS // max(1, vocab_size))


def lens_logits_chunks(
    loaded: LoadedModel, residual: torch.Tensor, cells: Sequence[tuple[int, int]], lens: Lens | None = None
) -> Iterator[tuple[list[tuple[int, int]], torch.Tensor]]:
    """Yield (cells, logits [n, vocab] float32) chunk by chunk for `cells` = [(layer, position)…]
    of a residual tensor [L+1, pos, d], read through `lens` (None: the logit lens)."""
    step = chunk_size(loaded.vocab_size)
    for start in range(0, len(cells), step):
        chunk = list(cells[start : start + step])
        layers = torch.tensor([c[0] for c in chunk])
        positions = torch.tensor([c[1] for c in chunk])
        yield chunk, loaded.backend.lens_logits(transformed(residual[layers, positions], layers, lens))


def resolve_lens(loaded: LoadedModel, lens: Lens | str | None) -> Lens | None:
    """A lens given by kind ("logit", "tuned", "jacobian": the one for this model, `lens_for`) or
    as a Lens; None when it is the logit lens (nothing to apply)."""
    if isinstance(lens, str):
        lens = lens_for(loaded, lens)
    return None if lens is None or lens.is_identity else lens


def transformed(
    hidden: torch.Tensor, layers: torch.Tensor | Sequence[int] | None, lens: Lens | None
) -> torch.Tensor:
    """Rows `hidden` [n, d] of residuals `layers` [n] through the lens's T_ℓ (unchanged for None)."""
    return hidden if lens is None else lens.transform(hidden, layers)


def top_k_table(loaded: LoadedModel, logits: torch.Tensor, k: int) -> list[tuple[TokenProb, ...]]:
    """Top-k (readable token, id, probability) for each row of logits [n, vocab]."""
    return _top_k_rows(loaded, torch.log_softmax(logits.float(), dim=-1), k)


def _top_k_rows(loaded: LoadedModel, logp: torch.Tensor, k: int) -> list[tuple[TokenProb, ...]]:
    """Top-k of each row of log-probabilities [n, vocab] (log is monotonic: same tokens as p)."""
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    tok = loaded.tokenizer
    return [
        tuple(
            TokenProb(readable_token(tok, int(i)), int(i), float(v))
            for v, i in zip(row_v.tolist(), row_i.tolist(), strict=True)
        )
        for row_v, row_i in zip(values.exp(), ids, strict=True)
    ]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ p log₂ p in bits (one unit on every page), per row of logits [n, vocab]."""
    return _entropy_of(torch.log_softmax(logits.float(), dim=-1))


def _entropy_of(logp: torch.Tensor) -> torch.Tensor:
    """Entropy in bits of each row of natural-log probabilities."""
    return -(logp.exp() * logp).sum(-1) / math.log(2)


def lens_cells(
    loaded: LoadedModel, residual: torch.Tensor, cells: Sequence[tuple[int, int]], k: int,
    lens: Lens | None = None,
) -> list[LensCell]:
    """The lens top-k at each (layer, position) in `cells`, in the order given."""
    out: list[LensCell] = []
    for chunk, logits in lens_logits_chunks(loaded, residual, cells, lens):
        out.extend(cells_from_top(loaded, chunk, *reduce_logits(logits, k)))
    return out


def reduce_logits(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lens logits [n, vocab] → (top-k probabilities [n, k], their ids [n, k], entropy in bits [n]):
    one log-softmax over the vocabulary serves both (log is monotonic: same tokens as p)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return values.exp(), ids, _entropy_of(logp)


def lens_top_k(
    architecture: Architecture, hidden: torch.Tensor, k: int, vocab_size: int,
    layers: Sequence[int] | None = None, lens: Lens | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The lens of each residual row `hidden` [n, d_model] (of residuals `layers` [n], needed with a
    `lens`), reduced where the residuals are (inside a backend's `reduce`, on NDIF for a remote
    model): `reduce_logits` of `architecture.logits`, `chunk_size(vocab)` rows at a time, so at most
    CHUNK_FLOATS logits exist at once and an [n, vocab] tensor is never built. Returns top-k
    probabilities [n, k], ids [n, k], entropy [n]."""
    step = chunk_size(vocab_size)
    if lens is not None:
        hidden = transformed(hidden, layers, lens)
    parts = [reduce_logits(architecture.logits(hidden[start : start + step]), k)
             for start in range(0, hidden.shape[0], step)]
    return tuple(torch.cat([part[i] for part in parts]) for i in range(3))  # type: ignore[return-value]


def cells_from_top(
    loaded: LoadedModel, cells: Sequence[tuple[int, int]], probs: torch.Tensor, ids: torch.Tensor,
    entropy_bits: torch.Tensor,
) -> list[LensCell]:
    """LensCells for (layer, position) `cells` from `reduce_logits`' tensors (readable tokens here)."""
    tok = loaded.tokenizer
    return [
        LensCell(
            layer=l, position=p, entropy_bits=e,
            top=tuple(TokenProb(readable_token(tok, int(i)), int(i), float(v))
                      for v, i in zip(row_p, row_i, strict=True)),
        )
        for (l, p), row_p, row_i, e in zip(
            cells, probs.tolist(), ids.tolist(), entropy_bits.tolist(), strict=True
        )
    ]


def lens_column(
    loaded: LoadedModel, residual: torch.Tensor, position: int, k: int, lens: Lens | str | None = None
) -> list[LensCell]:
    """The lens at one position for every layer 0…L (position may be negative: -1 = last)."""
    return lens_columns(loaded, [residual], position, k, lens)[0]


def lens_columns(
    loaded: LoadedModel, residuals: Sequence[torch.Tensor], position: int, k: int,
    lens: Lens | str | None = None,
) -> list[list[LensCell]]:
    """`lens_column` of several prompts' residuals [L+1, pos_i, d] of one model, computed together:
    for short prompts reading the unembedding's weights is most of the lens's cost, so one pass
    over them serves every prompt."""
    lens = resolve_lens(loaded, lens)
    at = [position % r.shape[1] for r in residuals]
    stacked = torch.stack([r[:, p] for r, p in zip(residuals, at, strict=True)], dim=1)  # [L+1, n, d]
    n_layers = stacked.shape[0]
    cells = lens_cells(loaded, stacked, [(l, i) for i in range(len(at)) for l in range(n_layers)], k, lens)
    return [
        [replace(cell, position=p) for cell in cells[i * n_layers : (i + 1) * n_layers]]
        for i, p in enumerate(at)
    ]


@dataclass(frozen=True)
class Arrival(Record):
    """When a token settles in the lens's top-`within` at one position, over layers 0…L.

    stays_from: the first layer ℓ such that the token is in the top-`within` at every layer ℓ…L
    (None when it is not at the last layer); earlier: the layers before that where it was in the
    top-`within` only briefly (it dropped out again). Reporting the first appearance instead would
    say "top-1 from layer 1" for an answer that only settles at layer 20.
    """

    within: int
    stays_from: int | None
    earlier: tuple[int, ...]

    def sentence(self, what: str) -> str:
        """E.g. 'top-1 from layer 20 on (briefly also at layers 1, 3)'."""
        rank = "top-1" if self.within == 1 else f"in the top-{self.within}"
        if self.stays_from is None:
            seen = f" (only briefly, at layers {_layer_list(self.earlier)})" if self.earlier else ""
            return f"{what} is not {rank} at the last layer{seen}"
        also = f" (briefly also at layer{'s' if len(self.earlier) > 1 else ''} {_layer_list(self.earlier)})"
        return f"{what} is {rank} from layer {self.stays_from} on{also if self.earlier else ''}"


def _layer_list(layers: Sequence[int], most: int = 6) -> str:
    shown = ", ".join(map(str, layers[:most]))
    return shown + (f" and {len(layers) - most} more" if len(layers) > most else "")


def arrival(column: Sequence[Sequence[TokenProb]], token_id: int, within: int = 1) -> Arrival:
    """Where `token_id` settles in the lens top-`within` (column[ℓ] = the top-k at layer ℓ)."""
    inside = [token_id in {t.id for t in top[:within]} for top in column]
    stays_from = None
    for layer in range(len(inside) - 1, -1, -1):
        if not inside[layer]:
            break
        stays_from = layer
    before = len(inside) if stays_from is None else stays_from
    return Arrival(within, stays_from, tuple(layer for layer in range(before) if inside[layer]))


def position_window(n_tokens: int, size: int = 16, back: int = 0) -> tuple[int, ...]:
    """The `size` positions that end `back` tokens before the last one (clipped to the prompt).

    >>> position_window(20, 4), position_window(20, 4, back=2), position_window(3, 16)
    ((16, 17, 18, 19), (14, 15, 16, 17), (0, 1, 2))
    """
    end = max(0, n_tokens - 1 - max(0, back))
    return tuple(range(max(0, end - size + 1), end + 1))


def _check_positions(cap: Capture, positions: Sequence[int]) -> None:
    if not positions or not all(0 <= p < cap.n_tokens for p in positions):
        raise SettingsError(f"Positions run from 0 to {cap.n_tokens - 1} in a {cap.n_tokens}-token prompt.")


@dataclass(frozen=True)
class LensGrid(Record):
    """The lens of one prompt at every layer 0…L for a window of its positions.

    cells[ℓ][i] is the lens at layer ℓ and position positions[i], whose input token is tokens[i].
    The last row (ℓ = L) is the model's own prediction at each position.
    """

    positions: tuple[int, ...]
    tokens: tuple[str, ...]
    cells: tuple[tuple[LensCell, ...], ...]  # [L+1][len(positions)]

    def final_id(self, i: int) -> int:
        """The model's own top-1 token id at positions[i]."""
        return self.cells[-1][i].top[0].id

    def matches_final(self, layer: int, i: int) -> bool:
        """Whether the lens top-1 at (layer, positions[i]) is already the model's final top-1 there."""
        return self.cells[layer][i].top[0].id == self.final_id(i)


def top1_disagreement(first: LensGrid, second: LensGrid) -> tuple[tuple[int, ...], ...]:
    """Per layer ℓ = 0…L, the positions (of `first.positions`) where two lenses' top-1 differ on the
    same prompt and window (e.g. the logit and the Jacobian lens): where the first one misleads, if
    the second is the more faithful. The last layer is always empty (every lens is the model there)."""
    if first.positions != second.positions or len(first.cells) != len(second.cells):
        raise SettingsError("Two lens grids are compared on the same positions and layers only.")
    return tuple(
        tuple(p for p, x, y in zip(first.positions, row_1, row_2, strict=True) if x.top[0].id != y.top[0].id)
        for row_1, row_2 in zip(first.cells, second.cells, strict=True)
    )


def lens_grid(
    loaded: LoadedModel, cap: Capture, positions: Sequence[int], k: int, lens: Lens | str | None = None
) -> LensGrid:
    """The lens top-k at every layer for the given positions of a captured prompt (only those cells).
    For a capture without its residual stream (a model on NDIF) the cells are reduced in the trace."""
    _check_positions(cap, positions)
    lens = resolve_lens(loaded, lens)
    width = len(positions)
    cells = [(layer, p) for layer in range(loaded.n_layers + 1) for p in positions]
    if cap.residual is None:
        flat = cells_from_top(
            loaded, cells, *_in_trace(loaded, cap, _lens_of_cells, cells=tuple(cells), k=k, lens=lens)
        )
    else:
        flat = lens_cells(loaded, cap.residual, cells, k, lens)
    return LensGrid(
        positions=tuple(positions),
        tokens=tuple(cap.tokens[p] for p in positions),
        cells=tuple(tuple(flat[i : i + width]) for i in range(0, len(flat), width)),
    )


def _in_trace(loaded: LoadedModel, cap: Capture, reduction: Callable, **settings: object) -> object:
    """`reduction(residual [L+1, pos, d], architecture=…, vocab_size=…, **settings)` run where the
    prompt's residual stream is (`Backend.run_each`); only its result comes back."""
    sites = residual_sites(loaded.n_layers)
    return loaded.backend.run_each(
        [torch.tensor([cap.token_ids], dtype=torch.long)],
        sites=sites,
        reduce=partial(
            _on_residual, reduction=reduction, sites=tuple(sites), architecture=loaded.architecture,
            vocab_size=loaded.vocab_size, **settings,
        ),
    )


def _on_residual(runs: Sequence[Run], *, reduction: Callable, sites: tuple[Site, ...], **settings: object):
    residual = torch.stack([runs[0].activations[site][0] for site in sites])  # [L+1, pos, d]
    return reduction(residual, **settings)


def _lens_of_cells(
    residual: torch.Tensor, *, architecture: Architecture, vocab_size: int, cells: Cells, k: int,
    lens: Lens | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`lens_top_k` of the residual rows at (layer, position) `cells`, in chunks."""
    hidden = torch.stack([residual[layer, p] for layer, p in cells])
    return lens_top_k(architecture, hidden, k, vocab_size, [layer for layer, _ in cells], lens)


@dataclass(frozen=True)
class RankedToken:
    """One token of a cell's top-k, with where it stood one layer below."""

    token: str
    id: int
    prob: float
    rank: int  # 1 = the lens's top-1 at this layer
    rank_below: int | None  # its rank at layer ℓ−1 over the whole vocabulary; None at layer 0
    prob_below: float | None

    @property
    def rank_change(self) -> int | None:
        """Places climbed since the layer below (rank_below − rank; positive = moved up)."""
        return None if self.rank_below is None else self.rank_below - self.rank

    def to_dict(self) -> dict:
        return {
            "token": self.token,
            "id": self.id,
            "prob": self.prob,
            "rank": self.rank,
            "rank_below": self.rank_below,
            "prob_below": self.prob_below,
            "rank_change": self.rank_change,
        }


@dataclass(frozen=True)
class CellDetail:
    """The lens top-k at one (layer, position) of one prompt, each token with its rank one layer below."""

    layer: int
    position: int
    input_token: str
    top: tuple[RankedToken, ...]
    entropy_bits: float

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "position": self.position,
            "input_token": self.input_token,
            "top": [t.to_dict() for t in self.top],
            "entropy_bits": self.entropy_bits,
        }


def vocabulary_rank(values: torch.Tensor, ids: torch.Tensor | Sequence[int]) -> torch.Tensor:
    """rank_t = 1 + #{u : values_u > values_t} for each id t (1 = top), per row.

    values: [..., vocab] logits or probabilities (softmax keeps the order); ids: [m] → ranks [..., m].
    """
    ids = torch.as_tensor(ids, dtype=torch.long, device=values.device)
    chosen = values[..., ids]
    return 1 + (values.unsqueeze(-2) > chosen.unsqueeze(-1)).sum(-1)


def cell_detail(
    loaded: LoadedModel, cap: Capture, layer: int, position: int, k: int, lens: Lens | str | None = None
) -> CellDetail:
    """The lens top-k at (layer, position) of a captured prompt, with each token's rank and
    probability at layer − 1 (ranks over the whole vocabulary, 1 = top). For a capture without its
    residual stream (a model on NDIF) the cell is reduced in the trace."""
    _check_positions(cap, [position])
    lens = resolve_lens(loaded, lens)
    if not 0 <= layer <= loaded.n_layers:
        raise SettingsError(f"The layer must lie between 0 and {loaded.n_layers}.")
    cells = [(layer, position)] + ([(layer - 1, position)] if layer > 0 else [])
    if cap.residual is None:
        probs, ids, ranks, probs_below, entropy = _in_trace(
            loaded, cap, _detail_of_cells, cells=tuple(cells), k=k, lens=lens
        )
    else:
        logits = torch.cat([chunk for _, chunk in lens_logits_chunks(loaded, cap.residual, cells, lens)])
        probs, ids, ranks, probs_below, entropy = detail_tensors(logits, k)
    (top,) = cells_from_top(loaded, cells[:1], probs, ids, entropy)
    below = [None] * len(top.top) if ranks is None else zip(ranks.tolist(), probs_below.tolist(), strict=True)
    return CellDetail(
        layer=layer,
        position=position,
        input_token=cap.tokens[position],
        top=tuple(
            RankedToken(t.token, t.id, t.prob, rank, *(pair or (None, None)))
            for rank, (t, pair) in enumerate(zip(top.top, below, strict=True), 1)
        ),
        entropy_bits=top.entropy_bits,
    )


def detail_tensors(logits: torch.Tensor, k: int) -> tuple:
    """Lens logits of a cell (and of the cell one layer below, when given) [1 or 2, vocab] →
    (top-k probs [1, k], ids [1, k], ranks below [k] or None, probs below [k] or None, entropy [1])."""
    probs, ids, entropy = reduce_logits(logits[:1], k)
    if logits.shape[0] < 2:
        return probs, ids, None, None, entropy
    below = logits[1]
    return probs, ids, vocabulary_rank(below, ids[0]), torch.softmax(below, dim=-1)[ids[0]], entropy


def _detail_of_cells(
    residual: torch.Tensor, *, architecture: Architecture, vocab_size: int, cells: Cells, k: int,
    lens: Lens | None = None,
) -> tuple:
    hidden = torch.stack([residual[layer, p] for layer, p in cells])
    return detail_tensors(architecture.logits(transformed(hidden, [layer for layer, _ in cells], lens)), k)
