"""The top-token diff: layer by layer, how A's and B's next-token distributions differ at one position each.

For every layer ℓ the logit lens gives A a distribution p = p_ℓ(A) and B a distribution q = p_ℓ(B)
over the whole vocabulary (at a position chosen in each prompt, by default the last). Reported,
all in **bits** (log base 2):

- KL(A‖B)  = Σ p log₂(p / q)                      — ≥ 0, 0 iff p = q, unbounded, not symmetric
- JS(A, B) = ½ KL(A‖M) + ½ KL(B‖M),  M = (p + q)/2  — symmetric, 0 ≤ JS ≤ 1 bit
- entropy  H(p) = −Σ p log₂ p
- top-k overlap: Jaccard |top_k(p) ∩ top_k(q)| / |top_k(p) ∪ top_k(q)|
- the token whose probability changed most: argmax_t |q_t − p_t| over the whole vocabulary (none
  when p = q)

Signs: Δprob = p_B − p_A and Δrank = rank_B − rank_A, so a positive Δrank means the token fell
in B. Ranks are 1-based over the whole vocabulary (1 = most likely).

Model vs model (`loaded_b=`): p is A's capture read through model 1's final norm and unembedding,
q is B's capture (usually the same prompt) read through model 2's. The two must share a tokenizer;
when one vocabulary is longer (a fine-tune that added tokens), the shorter model gives the tokens
it lacks probability 0, so KL(A‖B) is +inf exactly when A puts mass on a token B cannot produce.

Only the two distributions of one layer-chunk are alive at once (`lens.chunk_size`), never a
layers × positions × vocab tensor.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ..core.capture import Capture
from ..core.checks import check_same_tokenizer, check_top_k, resolve_position
from ..core.errors import ModelPairError
from ..core.models import LoadedModel
from ..core.tokens import readable_token
from .common.lens import TokenProb, chunk_size, resolve_lens, top_k_table, transformed, vocabulary_rank
from .common.lenses import NAMES, Lens

LN2 = math.log(2.0)
# Several float64 [n, vocab] temporaries per prompt live at once; keep them near one lens chunk.
_FLOAT64_TEMPORARIES = 8


@dataclass(frozen=True)
class TokenDelta:
    """One token under both distributions: probabilities and 1-based ranks over the whole vocabulary."""

    token: str
    id: int
    prob_a: float
    prob_b: float
    rank_a: int
    rank_b: int

    @property
    def delta_prob(self) -> float:
        """p_B − p_A."""
        return self.prob_b - self.prob_a

    @property
    def delta_rank(self) -> int:
        """rank_B − rank_A (positive: the token is less likely in B)."""
        return self.rank_b - self.rank_a

    def to_dict(self) -> dict:
        return {
            "token": self.token,
            "id": self.id,
            "prob_a": self.prob_a,
            "prob_b": self.prob_b,
            "rank_a": self.rank_a,
            "rank_b": self.rank_b,
            "delta_prob": self.delta_prob,
            "delta_rank": self.delta_rank,
        }


@dataclass(frozen=True)
class LayerDiff:
    """A against B at one layer.

    shared: tokens in both top-k lists, in A's order; only_a / only_b: the rest of each top-k,
    with the other prompt's probability and rank filled in. KL, JS and entropies are in bits.
    """

    layer: int
    top_a: tuple[TokenProb, ...]
    top_b: tuple[TokenProb, ...]
    shared: tuple[TokenDelta, ...]
    only_a: tuple[TokenDelta, ...]
    only_b: tuple[TokenDelta, ...]
    kl_bits: float  # KL(A‖B)
    js_bits: float  # Jensen–Shannon, in [0, 1]
    jaccard: float  # top-k overlap
    entropy_a_bits: float
    entropy_b_bits: float
    most_changed: TokenDelta | None  # argmax |p_B − p_A| over the whole vocabulary; None if p_A = p_B

    def to_dict(self) -> dict:
        return {
            "layer": self.layer,
            "top_a": [t.to_dict() for t in self.top_a],
            "top_b": [t.to_dict() for t in self.top_b],
            "shared": [t.to_dict() for t in self.shared],
            "only_a": [t.to_dict() for t in self.only_a],
            "only_b": [t.to_dict() for t in self.only_b],
            "kl_bits": self.kl_bits,
            "js_bits": self.js_bits,
            "jaccard": self.jaccard,
            "entropy_a_bits": self.entropy_a_bits,
            "entropy_b_bits": self.entropy_b_bits,
            "most_changed": self.most_changed.to_dict() if self.most_changed else None,
        }


@dataclass(frozen=True)
class TopTokenDiff:
    """The diff at every layer 0…L, at `position_a` of A and `position_b` of B (0-based)."""

    position_a: int
    position_b: int
    token_a: str  # the input token at that position of A
    token_b: str
    top_k: int
    layers: tuple[LayerDiff, ...]
    lens_a: str = "logit lens"  # the lens A was read with, as a caption names it
    lens_b: str = "logit lens"

    def to_dict(self) -> dict:
        return {
            "position_a": self.position_a,
            "position_b": self.position_b,
            "token_a": self.token_a,
            "token_b": self.token_b,
            "top_k": self.top_k,
            "lens_a": self.lens_a,
            "lens_b": self.lens_b,
            "layers": [layer.to_dict() for layer in self.layers],
        }


def check_model_pair(model_a: LoadedModel, model_b: LoadedModel) -> None:
    """Two models' lens distributions can be compared layer by layer: one tokenizer, as many layers.
    Raises `ModelPairError` otherwise (needs no forward pass)."""
    check_same_tokenizer(model_a, model_b)
    if model_a.n_layers != model_b.n_layers:
        raise ModelPairError(
            f"The top-token diff compares the two models layer by layer, but {model_a.name} has "
            f"{model_a.n_layers} layers and {model_b.name} has {model_b.n_layers}. Each model's logit "
            "lens can still be read on its own."
        )


def _lens_logits(
    loaded: LoadedModel, cap: Capture, layers: torch.Tensor, position: int, width: int,
    lens: Lens | None = None,
) -> torch.Tensor:
    """Lens logits [n, width] of `cap` at `position` for `layers`, through `loaded` (and `lens`);
    vocabulary entries past the model's own (`width` > its vocabulary) are −inf, i.e. probability 0."""
    logits = loaded.backend.lens_logits(transformed(cap.residual[layers, position], layers, lens))
    return torch.nn.functional.pad(logits, (0, width - logits.shape[-1]), value=-math.inf)


def _paired_logits(
    model_a: LoadedModel, cap_a: Capture, pos_a: int, model_b: LoadedModel, cap_b: Capture, pos_b: int,
    lens: Lens | None = None, lens_b: Lens | None = None,
) -> Iterator[tuple[range, torch.Tensor, torch.Tensor]]:
    """Yield (layers, lens logits of A [n, vocab], of B [n, vocab]) chunk by chunk over all layers,
    each side through its own model, both as wide as the larger vocabulary."""
    n_layers = cap_a.residual.shape[0]
    width = max(model_a.vocab_size, model_b.vocab_size)
    step = max(1, chunk_size(width) // _FLOAT64_TEMPORARIES)
    for start in range(0, n_layers, step):
        layers = range(start, min(start + step, n_layers))
        index = torch.tensor(list(layers))
        yield (
            layers,
            _lens_logits(model_a, cap_a, index, pos_a, width, lens),
            _lens_logits(model_b, cap_b, index, pos_b, width, lens_b),
        )


def _plogp_sum(p: torch.Tensor, log_ratio: torch.Tensor) -> torch.Tensor:
    """Σ p · log_ratio per row, in bits, with 0 · log 0 = 0."""
    return torch.where(p > 0, p * log_ratio, torch.zeros_like(p)).sum(-1) / LN2


def kl_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p‖q) = Σ p log₂(p/q) per row of probabilities [n, vocab]; +inf where q = 0 < p."""
    return _plogp_sum(p, p.log() - q.log()).clamp_min(0.0)


def js_bits(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Jensen–Shannon ½KL(p‖m) + ½KL(q‖m), m = (p+q)/2, per row, in bits (0 ≤ JS ≤ 1)."""
    m = (p + q) / 2
    return (kl_bits(p, m) + kl_bits(q, m)) / 2


def entropy_bits(p: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ p log₂ p per row."""
    return -_plogp_sum(p, p.log())


def _deltas(tokenizer, p: torch.Tensor, q: torch.Tensor, ids: list[int]) -> list[TokenDelta]:
    ranks_a, ranks_b = vocabulary_rank(p, ids).tolist(), vocabulary_rank(q, ids).tolist()
    return [
        TokenDelta(readable_token(tokenizer, i), i, float(p[i]), float(q[i]), ra, rb)
        for i, ra, rb in zip(ids, ranks_a, ranks_b, strict=True)
    ]


def _layer_diff(
    tokenizer, layer: int, p: torch.Tensor, q: torch.Tensor,
    top_a: tuple[TokenProb, ...], top_b: tuple[TokenProb, ...], stats: dict[str, float],
) -> LayerDiff:
    ids_a, ids_b = [t.id for t in top_a], [t.id for t in top_b]
    shared = [i for i in ids_a if i in set(ids_b)]
    only_a = [i for i in ids_a if i not in set(ids_b)]
    only_b = [i for i in ids_b if i not in set(ids_a)]
    change = (q - p).abs()
    most = int(change.argmax())
    return LayerDiff(
        layer=layer,
        top_a=top_a,
        top_b=top_b,
        shared=tuple(_deltas(tokenizer, p, q, shared)),
        only_a=tuple(_deltas(tokenizer, p, q, only_a)),
        only_b=tuple(_deltas(tokenizer, p, q, only_b)),
        jaccard=len(shared) / len(set(ids_a) | set(ids_b)),
        most_changed=_deltas(tokenizer, p, q, [most])[0] if change[most] > 0 else None,
        **stats,
    )


def top_token_diff(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    *,
    position_a: int = -1,
    position_b: int = -1,
    top_k: int = 10,
    loaded_b: LoadedModel | None = None,
    lens: Lens | str | None = None,
    lens_b: Lens | str | None = None,
) -> TopTokenDiff:
    """Compare the lens distributions of A (at `position_a`) and B (at `position_b`) at every layer.

        For France vs Italy on the embedded model, `d.layers[-1].most_changed.token` is '␣Paris'
        and every `js_bits` is at most 1.

    `loaded_b`: B's model when it is not `loaded` (model vs model: `cap_b` was run through
    `loaded_b`, usually on A's prompt). Refused with `ModelPairError` when the two models do not
    share a tokenizer or have different numbers of layers (layer ℓ of one has no counterpart).

        `top_token_diff(base, capture(base, p), capture(tuned, p), loaded_b=tuned)`.

    `lens`: read both prompts through that lens (lib.analyses.common.lenses). Two models: `lens`
    reads A through `loaded`'s lens and `lens_b` B through `loaded_b`'s (a kind such as "jacobian"
    names each model's own lens of that kind; `lens_b` defaults to `lens` when it is a kind).
    """
    model_b = loaded if loaded_b is None else loaded_b
    check_top_k(loaded, top_k)
    check_top_k(model_b, top_k)
    if model_b is not loaded:
        check_model_pair(loaded, model_b)
    if model_b is loaded:
        lens_b = lens if lens_b is None else lens_b
    elif lens_b is None and isinstance(lens, str):
        lens_b = lens  # each model through its own lens of that kind
    elif lens_b is None and lens is not None and not lens.is_identity:
        raise ModelPairError(
            "A tuned or Jacobian lens belongs to one model; give model 2's own lens (lens_b) too."
        )
    lens, lens_b = resolve_lens(loaded, lens), resolve_lens(model_b, lens_b)
    pos_a = resolve_position(position_a, cap_a.n_tokens, "A")
    pos_b = resolve_position(position_b, cap_b.n_tokens, "B")
    # Both agree on every id of the shorter vocabulary; the longer one also names the added tokens.
    tokenizer = max(loaded.tokenizer, model_b.tokenizer, key=len)
    layers: list[LayerDiff] = []
    paired = _paired_logits(loaded, cap_a, pos_a, model_b, cap_b, pos_b, lens, lens_b)
    for chunk, logits_a, logits_b in paired:
        tops_a, tops_b = top_k_table(loaded, logits_a, top_k), top_k_table(model_b, logits_b, top_k)
        p, q = torch.softmax(logits_a.double(), -1), torch.softmax(logits_b.double(), -1)
        columns = {
            "kl_bits": kl_bits(p, q).tolist(),
            "js_bits": js_bits(p, q).tolist(),
            "entropy_a_bits": entropy_bits(p).tolist(),
            "entropy_b_bits": entropy_bits(q).tolist(),
        }
        for row, layer in enumerate(chunk):
            stats = {name: values[row] for name, values in columns.items()}
            layers.append(_layer_diff(tokenizer, layer, p[row], q[row], tops_a[row], tops_b[row], stats))
    return TopTokenDiff(
        position_a=pos_a,
        position_b=pos_b,
        token_a=cap_a.tokens[pos_a],
        token_b=cap_b.tokens[pos_b],
        top_k=top_k,
        layers=tuple(layers),
        lens_a=NAMES["logit"] if lens is None else lens.provenance,
        lens_b=NAMES["logit"] if lens_b is None else lens_b.provenance,
    )
