"""Which components make the difference: direct logit attribution, attention patterns, and
patching of attention outputs, MLP outputs and single heads (exact and attribution patching).

**Direct logit attribution (DLA).** The residual before the final norm at the last position is a
sum of parts (tested on every family in tests/unit/test_sites.py):

    x_L = embed + Σ_ℓ (attn_ℓ + mlp_ℓ)        embed = residual 0, attn_ℓ = hook_attn_out, mlp_ℓ = hook_mlp_out

and the metric is m = logit[answer] − logit[wrong] = (W_U[a] − W_U[w]) · P(norm(x_L)) (+ unembedding
bias), P = OPT's project_out or the identity. With the norm's scale s frozen at the real x_L
(RMSNorm: s = √(mean(x_L²) + ε); LayerNorm: s = √(var(x_L) + ε) and the mean subtracted, which is
linear), norm(x) = g(x)/s ⊙ γ + β is affine, so each part c contributes

    dla(c) = c · w,     w = center(γ ⊙ Pᵀ(W_U[a] − W_U[w]) / s)

(TransformerLens's `residual_stack_to_logit_diff`), and the parts sum to the *linearized* logit
difference exactly. With the scale frozen at x_L itself that is the model's own logit difference
on every family without a logit soft-cap (GPT-2, GPT-Neo, GPT-NeoX, OPT, Llama, Mistral, Qwen2,
Gemma, Phi-3: tested); Gemma-2 caps its logits, cap·tanh(l/cap), after the unembedding, so there
the linearized difference is the one *before* the cap and differs from the model's own.

Head h of layer ℓ: the output projection is affine in its input z (hook_z, [heads, d_head]
flattened), attn_ℓ = Σ_h z_h W_O[h] + b_O, so head h contributes z_h · (W_O[h] w) (W_O[h] is the
h-th d_head slice of the projection: columns of an nn.Linear weight [d, H·d_head], rows of GPT-2's
Conv1D weight [H·d_head, d]). Gemma-2 normalizes the attention output again before adding it
(post-attention RMSNorm): there its scale is frozen too, at the real projection output, so the
heads still sum to attn_ℓ exactly. Biases are counted once, in `bias`: the output projections'
biases, the final norm's β and the unembedding's bias. So

    embed + Σ_ℓ attn_ℓ + Σ_ℓ mlp_ℓ + bias = linearized logit difference,   attn_ℓ = Σ_h heads_ℓ[h]

and mlp_ℓ includes the MLP's own biases.

**Component patching.** As in residual patching (lib.analyses.patching), B is rerun with A's
activation written in, the metric read at B's last position and normalized:
effect = (m_patched − m_B) / (m_A − m_B). Here the activation is one layer's attention output,
MLP output, or one head's z — at every position at once (equal lengths; else A's last position
into B's last), or position by position. Patching the embedding and every component of blocks
0…ℓ equals patching residual ℓ+1 (exact; tested), and patching all heads' z of a layer equals
patching its attention output.

**Attribution patching (AtP; Nanda 2023, Kramár et al. 2024).** One forward and one backward pass
of B give g = ∂m/∂a for every site at once; the first-order estimate of each exact effect is

    effect ≈ Σ_positions (a_A − a_B) · g  / (m_A − m_B)

shown beside the exact grid with their agreement (Pearson r), never as if it were exact.

**Attention patterns** are the model's own weights [heads, query, key] (eager attention for that
pass only); each row sums to 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..core.architecture import affine_rows
from ..core.backend import Gradients, Transplant, transplant_interventions
from ..core.capture import Capture
from ..core.errors import ArchitectureError, PromptError, SettingsError
from ..core.models import LoadedModel
from ..core.records import Record
from ..core.sites import Site
from .common.metric import MetricPair, TokenRef, answer_and_wrong, metric_pair
from .common.rows import block_of, rows_or_own, same_values

Progress = Callable[[float], None]
COMPONENTS = ("attn", "mlp")
LINEARIZATION = (
    "Direct logit attribution reads each part through the final norm with its scale frozen at the "
    "real final residual (the standard linearization, as TransformerLens's residual_stack_to_logit_diff)."
)
# |frozen-norm linearization − the real modules' pre-cap logit difference| allowed, relative
DLA_TOLERANCE = {torch.float32: 1e-3, torch.float64: 1e-6}
DLA_TOLERANCE_HALF = 5e-2


# --- Direct logit attribution -------------------------------------------------------------------


@dataclass(frozen=True)
class Attribution(Record):
    """One prompt's logit difference at its last position, decomposed (see the module docstring).

    logit_diff: the model's own logit[answer] − logit[wrong]
    linearized_logit_diff: the same through the frozen-scale final norm, before any logit soft-cap;
        = embed + Σ attn + Σ mlp + bias
    attn[ℓ], mlp[ℓ]: per layer; attn[ℓ] = Σ_h heads[ℓ][h]
    bias: output-projection biases + final-norm β + unembedding bias, counted once
    """

    logit_diff: float
    linearized_logit_diff: float
    embed: float
    attn: tuple[float, ...]
    mlp: tuple[float, ...]
    heads: tuple[tuple[float, ...], ...]
    bias: float

    @property
    def parts_sum(self) -> float:
        return self.embed + sum(self.attn) + sum(self.mlp) + self.bias


@dataclass(frozen=True)
class ComponentAttribution(Record):
    """DLA of both prompts for one answer/wrong pair."""

    model: dict
    bos: str
    answer: TokenRef
    wrong: TokenRef
    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]
    a: Attribution
    b: Attribution
    note: str


@dataclass(frozen=True)
class _FrozenNorm:
    """norm(x) ≈ center(x) ⊙ scale + shift for x near the point the scale was frozen at."""

    scale: torch.Tensor  # [d] float64: γ / s
    shift: torch.Tensor  # [d] float64: β
    center: bool  # LayerNorm subtracts the mean

    def direction(self, w: torch.Tensor) -> torch.Tensor:
        """The vector v with frozen_norm(x) · w = x · v + shift · w."""
        v = self.scale * w
        return v - v.mean() if self.center else v


def _frozen_norm(norm: nn.Module, x: torch.Tensor) -> _FrozenNorm:
    """Freeze `norm`'s scale at x [d]: LayerNorm uses its weight and bias; an RMSNorm of any family
    (γ, Gemma's 1 + γ, float32 inside) is read off its own output on a vector of ones,
    norm(1) = γ_eff / √(1 + ε)."""
    x = x.double()
    found = (getattr(norm, name, None) for name in ("eps", "variance_epsilon"))
    eps = next((float(v) for v in found if isinstance(v, float)), None)
    if eps is None:
        raise ArchitectureError(
            f"twinlens cannot freeze the scale of {type(norm).__name__}: it has no epsilon it knows."
        )
    if isinstance(norm, nn.LayerNorm):
        d = x.shape[-1]
        ones = torch.ones(d, dtype=torch.float64, device=x.device)
        gamma = norm.weight.double() if norm.weight is not None else ones
        beta = norm.bias.double() if norm.bias is not None else torch.zeros_like(ones)
        s = torch.sqrt(x.var(unbiased=False) + eps)
        return _FrozenNorm(gamma / s, beta, True)
    param = next(norm.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    with torch.inference_mode():
        ones = torch.ones(1, x.shape[-1], dtype=dtype, device=x.device)
        gamma = norm(ones)[0].double() * math.sqrt(1 + eps)
    s = torch.sqrt(x.pow(2).mean() + eps)
    return _FrozenNorm(gamma / s, torch.zeros_like(gamma), False)


def _readout(loaded: LoadedModel, answer: int, wrong: int) -> tuple[torch.Tensor, float]:
    """(u [d_model], c): logit[answer] − logit[wrong] = u · norm(x) + c before any soft-cap."""
    arch = loaded.architecture
    unembed_w, unembed_b = affine_rows(arch.unembed, "unembedding")
    u = (unembed_w[answer] - unembed_w[wrong]).double()
    c = float(unembed_b[answer] - unembed_b[wrong]) if unembed_b is not None else 0.0
    if arch.project_out is not None:
        proj_w, proj_b = affine_rows(arch.project_out, "output projection")
        if proj_b is not None:
            c += float(proj_b.double() @ u)
        u = proj_w.double().T @ u
    return u, c


def _last_position(sites: Sequence[Site]) -> Callable:
    def reduce(run):
        return run.logits[0], {site: run.activations[site][0, -1] for site in sites}

    return reduce


def attribute(loaded: LoadedModel, token_ids: Sequence[int], answer: int, wrong: int) -> Attribution:
    """DLA of one prompt [pos] at its last position, from ONE forward pass recording residual 0,
    residual L and every layer's attn_out, mlp_out and z."""
    arch, n = loaded.architecture, loaded.n_layers
    if arch.n_heads is None:
        raise ArchitectureError(f"'{arch.family}' does not say how many attention heads it has.")
    sites = [Site.residual_at(0, n), Site.residual_at(n, n)]
    sites += [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "mlp_out", "z")]
    logits, acts = loaded.backend.run(
        torch.tensor([list(token_ids)], dtype=torch.long), sites=sites, reduce=_last_position(sites)
    )
    with torch.inference_mode():
        return _decompose(loaded, logits, acts, answer, wrong)


@torch.inference_mode()
def readout(loaded: LoadedModel, x_last: torch.Tensor, answer: int, wrong: int) -> tuple[torch.Tensor, float]:
    """(w [d_model] float64, bias): the frozen-scale linearization at the real final residual
    x_last [d_model], logit[answer] − logit[wrong] ≈ x · w + bias (exact at x = x_last, before any
    soft-cap). Refuses a final norm whose frozen map does not reproduce the real one at x_last."""
    arch = loaded.architecture
    u, const = _readout(loaded, answer, wrong)
    x = x_last.double()
    u = u.to(x.device)
    if arch.final_norm is None:
        return u, const
    frozen = _frozen_norm(arch.final_norm, x)
    w, bias = frozen.direction(u), const + float(frozen.shift @ u)
    linearized = float(x @ w) + bias
    real = float(u @ arch.final_norm(x_last[None])[0].double()) + const
    tolerance = DLA_TOLERANCE.get(loaded.dtype, DLA_TOLERANCE_HALF)
    if not abs(real - linearized) <= tolerance * max(1.0, abs(real)):
        raise ArchitectureError(
            f"twinlens cannot linearize the final norm of '{arch.family}' "
            f"({type(arch.final_norm).__name__}): frozen {linearized:.4g} vs real {real:.4g}."
        )
    return w, bias


def _decompose(loaded: LoadedModel, logits: torch.Tensor, acts: dict, answer: int, wrong: int) -> Attribution:
    arch, n = loaded.architecture, loaded.n_layers
    x_last = acts[Site.residual_at(n, n)]
    w, bias = readout(loaded, x_last, answer, wrong)
    linearized = float(x_last.double() @ w) + bias
    attn, mlp, heads = [], [], []
    for layer in range(n):
        parts = arch.block_parts(layer)
        z = acts[Site(layer, "z")].double()  # [heads, d_head]
        proj_w, proj_b = affine_rows(parts.out_proj, "attention output projection")
        w_layer, layer_bias = w, 0.0
        if parts.attn_out is not parts.attention:  # Gemma-2: a norm after the projection, frozen too
            y = proj_w.double() @ z.flatten() + (proj_b.double() if proj_b is not None else 0)
            post = _frozen_norm(parts.attn_out, y)
            w_layer, layer_bias = post.direction(w), float(post.shift @ w)
        per_head = (proj_w.double().T @ w_layer).view(z.shape)  # [heads, d_head]: W_O[h] w
        if proj_b is not None:
            layer_bias += float(proj_b.double() @ w_layer)
        bias += layer_bias
        heads.append(tuple((z * per_head).sum(-1).tolist()))
        attn.append(float(acts[Site(layer, "attn_out")].double() @ w) - layer_bias)
        mlp.append(float(acts[Site(layer, "mlp_out")].double() @ w))
    return Attribution(
        logit_diff=float(logits[answer] - logits[wrong]),
        linearized_logit_diff=linearized,
        embed=float(acts[Site.residual_at(0, n)].double() @ w),
        attn=tuple(attn),
        mlp=tuple(mlp),
        heads=tuple(heads),
        bias=bias,
    )


def attribution_note(loaded: LoadedModel) -> str:
    """What the linearized logit difference is for this model, in one or two sentences."""
    cap = loaded.architecture.logit_softcap
    capped = (
        f" This model caps its logits (cap · tanh(logit / cap), cap = {cap:g}) after the unembedding, so the "
        "parts sum to the logit difference before the cap, which differs from the model's own."
        if cap else " Here that equals the model's own logit difference."
    )
    return LINEARIZATION + capped


def attribute_captures(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, *, answer: str | int | None = None,
    wrong: str | int | None = None,
) -> ComponentAttribution:
    """DLA of A and B (one forward pass each) for answer/wrong as the Patching page chooses them."""
    answer_ref, wrong_ref, _ = answer_and_wrong(loaded, cap_a, cap_b, answer, wrong)
    return ComponentAttribution(
        model=loaded.info(),
        bos=cap_b.bos,
        answer=answer_ref,
        wrong=wrong_ref,
        tokens_a=cap_a.tokens,
        tokens_b=cap_b.tokens,
        a=attribute(loaded, cap_a.token_ids, answer_ref.id, wrong_ref.id),
        b=attribute(loaded, cap_b.token_ids, answer_ref.id, wrong_ref.id),
        note=attribution_note(loaded),
    )


def top_components(result: ComponentAttribution, count: int = 3) -> list[tuple[str, float]]:
    """The heads and MLPs whose A − B contributions are largest in size: ('L3 H2', Δ) or ('MLP 5', Δ)."""
    a, b = result.a, result.b
    found = [(f"L{l} H{h}", a.heads[l][h] - b.heads[l][h]) for l in range(len(a.heads))
             for h in range(len(a.heads[l]))]
    found += [(f"MLP {l}", a.mlp[l] - b.mlp[l]) for l in range(len(a.mlp))]
    found.append(("embedding", a.embed - b.embed))
    return sorted(found, key=lambda item: -abs(item[1]))[:count]


def reading(result: ComponentAttribution, count: int = 3) -> str:
    """One plain sentence naming the components that account for most of the difference A − B."""
    total = result.a.linearized_logit_diff - result.b.linearized_logit_diff
    top = top_components(result, count)
    share = sum(delta for _, delta in top)
    named = ", ".join(f"{name} ({delta:+.2f})" for name, delta in top)
    pair = f"logit['{result.answer.token}'] − logit['{result.wrong.token}']"
    return (
        f"{pair} is {total:+.2f} higher in A than in B (linearized); the largest direct contributions to "
        f"that difference are {named}, together {share:+.2f}."
    )


# --- Attention patterns -------------------------------------------------------------------------


PATTERN_FLOATS = 1 << 24  # one prompt's patterns, all layers and heads, stay within 64 MB (float32)


@dataclass(frozen=True, eq=False)
class AttentionPatterns:
    """The attention weights of every layer for A and B, kept so that choosing a layer, head or query
    to look at runs nothing: a [layers, heads, query, key] and b likewise, float32 on the CPU; each
    row sums to 1."""

    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]
    a: torch.Tensor
    b: torch.Tensor

    @property
    def n_heads(self) -> int:
        return int(self.a.shape[1])

    def view(self, side: str, layer: int, head: int | None = None) -> list[list[float]]:
        """[query][key] weights of `side` ('a' or 'b') at `layer`: one head, or the heads' mean (None)."""
        weights = (self.a if side == "a" else self.b)[layer]
        return (weights.mean(0) if head is None else weights[head]).tolist()

    def to_dict(self) -> dict:
        return {"tokens_a": list(self.tokens_a), "tokens_b": list(self.tokens_b),
                "a": self.a.tolist(), "b": self.b.tolist()}


def patterns_of(loaded: LoadedModel, token_ids: Sequence[int]) -> torch.Tensor:
    """Every layer's attention weights [layers, heads, query, key] (float32, CPU) for one prompt,
    from the model's own attention run eagerly for this one forward pass."""
    sites = [Site(layer, "pattern") for layer in range(loaded.n_layers)]
    return loaded.backend.run(
        torch.tensor([list(token_ids)], dtype=torch.long), sites=sites, eager_attention=True,
        reduce=lambda run: torch.stack([run.activations[site][0].float().cpu() for site in sites]),
    )


def attention_patterns(loaded: LoadedModel, cap_a: Capture, cap_b: Capture) -> AttentionPatterns:
    """The attention patterns of A and B at every layer (one eager forward pass each). Refuses prompts
    whose patterns would not fit in `PATTERN_FLOATS` floats, saying the longest that would."""
    heads = loaded.architecture.n_heads or 1
    per_token_pair = loaded.n_layers * heads
    longest = math.isqrt(PATTERN_FLOATS // per_token_pair)
    for label, cap in (("A", cap_a), ("B", cap_b)):
        if cap.n_tokens > longest:
            raise SettingsError(
                f"Prompt {label} has {cap.n_tokens:,} tokens; attention patterns of every layer and head are "
                f"shown for prompts of at most {longest:,} tokens with this model. Shorten it to see them."
            )
    return AttentionPatterns(
        tokens_a=cap_a.tokens, tokens_b=cap_b.tokens,
        a=patterns_of(loaded, cap_a.token_ids), b=patterns_of(loaded, cap_b.token_ids),
    )


# --- Component and head patching ----------------------------------------------------------------


def activations_of(loaded: LoadedModel, token_ids: Sequence[int], sites: Sequence[Site]) -> dict:
    """Every position of `sites` for one prompt, batch dimension dropped (one forward pass)."""
    return loaded.backend.run(
        torch.tensor([list(token_ids)], dtype=torch.long), sites=sites,
        reduce=lambda run: {s: run.activations[s][0] for s in sites},
    )


def _row_layer(specs: Sequence[Transplant]) -> int:
    """The first block a row changes: blocks below it compute exactly what B's own run did."""
    return min(block_of(spec.site) for spec in specs)


def patched_metric(
    loaded: LoadedModel, acts_a: dict, cap_b: Capture, rows: Sequence[Sequence[Transplant]],
    metric: Callable[[torch.Tensor], torch.Tensor], *, step: int | None = None, skip: bool = True,
    progress: Progress | None = None, acts_b: dict | None = None,
) -> list[float]:
    """metric(B's last-position logits) with each row's specs applied, in the order of `rows`.

    Each row starts at the first block it changes, from B's own residual there (kept in its
    capture), and rows share passes as their depths allow (`common.rows.patched_rows`, which states
    the cost model); `skip=False` runs every row from block 0 instead: the same numbers, tested.
    `step` bounds the rows per pass. With B's activations `acts_b` (same sites, same layout as
    `acts_a`), a row whose specs all write exactly B's own values (positions before the first
    token where A and B differ, where a causal model computed the same, bit for bit) is B's own
    run: its metric is B's, with no pass."""
    own = [acts_b is not None and all(_writes_own_values(spec, acts_a, acts_b) for spec in specs)
           for specs in rows]
    return rows_or_own(
        loaded, cap_b, own, [_row_layer(specs) for specs in rows],
        lambda indices: transplant_interventions(acts_a, [rows[i] for i in indices]),
        lambda run: metric(run.logits), step=step, resume=skip, progress=progress,
    ).tolist()


def _writes_own_values(spec: Transplant, acts_a: dict, acts_b: dict) -> bool:
    """Whether `spec` writes into B exactly the values B already has there."""
    a = acts_a[spec.site][list(spec.source_positions)]
    b = acts_b[spec.site][list(spec.target_positions)]
    if spec.head is not None:
        a, b = a[:, spec.head], b[:, spec.head]
    return same_values(a, b)


@dataclass(frozen=True)
class Agreement(Record):
    """How well attribution patching estimates the exact head grid: Pearson r over all cells and
    the cells where they differ most, as (layer, head, exact, estimate)."""

    pearson_r: float | None
    worst: tuple[tuple[int, int, float, float], ...]


@dataclass(frozen=True)
class ComponentPatching(MetricPair):
    """Normalized effects of patching A's components into B, exact and estimated (AtP); the
    metric's fields are `MetricPair`'s.

    columns: the position groups patched — ("all",) (every position at once, equal lengths),
        ("last",) (A's last into B's last, lengths differ) or B's positions as strings.
    components[ℓ][c][j]: c = 0 attention output, 1 MLP output of block ℓ, group j
    heads[ℓ][h][j]: head h's z of block ℓ, group j
    atp_components, atp_heads: the attribution-patching estimates of the same cells
    (`to_dict` writes every field under its own name: the CLI's `patch` JSON)
    """

    columns: tuple[str, ...]
    components: tuple[tuple[tuple[float, ...], ...], ...]
    heads: tuple[tuple[tuple[float, ...], ...], ...]
    atp_components: tuple[tuple[tuple[float, ...], ...], ...]
    atp_heads: tuple[tuple[tuple[float, ...], ...], ...]
    agreement: Agreement
    note: str | None


def position_groups(
    cap_a: Capture, cap_b: Capture, per_position: bool
) -> tuple[list[tuple[tuple[int, ...], tuple[int, ...]]], tuple[str, ...], str | None]:
    """(B positions, A positions) per column of the grid, the columns' labels, and a note."""
    if cap_a.n_tokens != cap_b.n_tokens:
        if per_position:
            raise PromptError(
                f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}: a position-by-position grid "
                "needs prompts of the same length in tokens. Patch all positions instead, or make them equal."
            )
        note = (f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}, so positions do not line up: "
                "A's last position was patched into B's last.")
        return [((cap_b.n_tokens - 1,), (cap_a.n_tokens - 1,))], ("last",), note
    if per_position:
        every = range(cap_b.n_tokens)
        return [((p,), (p,)) for p in every], tuple(str(p) for p in every), None
    every = tuple(range(cap_b.n_tokens))
    return [(every, every)], ("all",), None


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    a, b = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    a, b = a - a.mean(), b - b.mean()
    denom = float(a.norm() * b.norm())
    return float(a @ b) / denom if denom > 0 else None


def patch_components(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    *,
    answer: str | int | None = None,
    wrong: str | int | None = None,
    per_position: bool = False,
    progress: Progress | None = None,
    rows: int | None = None,
    resume: bool = True,
) -> ComponentPatching:
    """Exact patching of every layer's attention and MLP output and every head, batched (see
    `patched_metric`; `rows` overrides the rows per pass), and attribution patching of the same
    cells from one forward and one backward pass of B. `resume=False` runs every exact cell from
    block 0 (the same numbers; the reference `make bench` times this against)."""
    arch, n = loaded.architecture, loaded.n_layers
    if arch.n_heads is None:
        raise ArchitectureError(f"'{arch.family}' does not say how many attention heads it has.")
    n_heads = arch.n_heads
    pair = metric_pair(loaded, cap_a, cap_b, answer, wrong)
    metric, gap = pair.metric(), pair.metric_a - pair.metric_b
    groups, columns, note = position_groups(cap_a, cap_b, per_position)
    sites = [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "mlp_out", "z")]
    acts_a = activations_of(loaded, cap_a.token_ids, sites)
    cells = [(layer, c, None) for layer in range(n) for c in range(2)]
    cells += [(layer, h, "z") for layer in range(n) for h in range(n_heads)]
    specs: list[list[Transplant]] = []
    for layer, index, kind in cells:
        for b_pos, a_pos in groups:
            if kind == "z":
                specs.append([Transplant(Site(layer, "z"), b_pos, a_pos, head=index)])
            else:
                specs.append([Transplant(Site(layer, ("attn_out", "mlp_out")[index]), b_pos, a_pos)])
    at_b = loaded.backend.gradients(
        torch.tensor([list(cap_b.token_ids)], dtype=torch.long), sites, lambda logits: metric(logits).sum()
    )
    acts_b = {site: at_b.run.activations[site][0] for site in sites}
    raw = patched_metric(
        loaded, acts_a, cap_b, specs, metric, step=rows, skip=resume, progress=progress,
        acts_b=acts_b if resume else None,
    )
    effects = [pair.normalized(m) for m in raw]
    width = len(groups)
    split = 2 * n * width

    def grid(values: Sequence[float], per_layer: int) -> tuple:
        return tuple(
            tuple(tuple(values[(layer * per_layer + c) * width : (layer * per_layer + c + 1) * width])
                  for c in range(per_layer))
            for layer in range(n)
        )

    atp_c, atp_h = _attribution_patching(loaded, acts_a, at_b, groups, gap)
    exact_heads = grid(effects[split:], n_heads)
    flat_exact = [v for row in exact_heads for cell in row for v in cell]
    flat_atp = [v for row in atp_h for cell in row for v in cell]
    order = sorted(range(len(flat_exact)), key=lambda i: -abs(flat_exact[i] - flat_atp[i]))[:5]
    worst = tuple((i // (n_heads * width), i // width % n_heads, flat_exact[i], flat_atp[i]) for i in order)
    return ComponentPatching(
        **pair.shared(), columns=columns, components=grid(effects[:split], 2), heads=exact_heads,
        atp_components=atp_c, atp_heads=atp_h, agreement=Agreement(_pearson(flat_exact, flat_atp), worst),
        note=note,
    )


def _attribution_patching(
    loaded: LoadedModel, acts_a: dict, found: Gradients, groups: list, gap: float
) -> tuple[tuple, tuple]:
    """AtP estimates of the component and head grids: Σ_group (a_A − a_B) · ∂m/∂a at B, / gap, with
    B's activations and gradients `found` (one forward and one backward pass of B)."""
    n = loaded.n_layers

    def estimate(site: Site, b_pos: tuple[int, ...], a_pos: tuple[int, ...]) -> torch.Tensor:
        delta = acts_a[site][list(a_pos)].double() - found.run.activations[site][0, list(b_pos)].double()
        grad = found.grads[site][0, list(b_pos)].double()
        return (delta * grad).sum(0).sum(-1) / gap  # [] for attn/mlp, [heads] for z

    components = tuple(
        tuple(tuple(float(estimate(Site(layer, kind), b, a)) for b, a in groups)
              for kind in ("attn_out", "mlp_out"))
        for layer in range(n)
    )
    heads = []
    for layer in range(n):
        per_group = [estimate(Site(layer, "z"), b, a).tolist() for b, a in groups]
        heads.append(tuple(tuple(g[h] for g in per_group) for h in range(len(per_group[0]))))
    return components, tuple(heads)
