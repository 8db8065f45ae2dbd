"""Steering with the difference between two prompts (activation addition, Turner et al. 2023).

The vector is read from the two prompts' residual streams at twinlens residual ℓ (0 = embeddings,
the input of block ℓ; site `Site.residual_at(ℓ, L)`):

    last     v = h_A[ℓ, −1] − h_B[ℓ, −1]                       [d_model]
    mean     v = mean_p h_A[ℓ, p] − mean_p h_B[ℓ, p]            [d_model]
    aligned  v[p] = h_A[ℓ, p] − h_B[ℓ, p], position by position [pos, d_model]
             (ActAdd's alignment; A and B must have the same number of tokens)

and α·v is added to the residual at ℓ of a target prompt T (B by default, or a third prompt):
at all positions — the prompt's and, during the continuation, every generated token's — or only at
the prompt's. An aligned vector is added at the prompt's positions p (T as long as A and B) and
never to generated tokens (they have no aligned position).

Effects at T's next token (the logits after the prompt): the logit difference
`logit[answer] − logit[wrong]` (answer = A's top-1, wrong = B's top-1, or tokens the user names),
their probabilities, and KL(steered ‖ unsteered) = Σ p_s (log₂ p_s − log₂ p_u) in bits. Side effect:
the same KL averaged over the positions of a short neutral text steered the same way. Controls: −α·v
and a random vector of the same norm (per position for aligned vectors), seeded.

The push of a steer is α‖v‖ / ‖h_T[ℓ, −1]‖, the added vector's norm relative to the residual it
is added to (the target's, at its last position); a push above `MAX_PUSH` is refused: the run
would be gibberish, not the vector's effect.

Steer-to-flip (`steer_to_flip`): for every layer ℓ the smallest α ≥ 0 at which B's steered
next-token top-1 is A's answer — on a grid of α (`FLIP_GRID`, rows of a few batched passes, each row
starting at its own block: `next_token_logits`), then
by bisection between the last grid value that does not flip and the first that does (one row per
layer per step). The layer needing the smallest push is named; `twinlens steer --layer ℓ --alpha α`
reproduces the flip (the α reported is one the search ran and saw flip).

Two facts follow from the definitions and are tested on every family: α = 0 is exactly the
unsteered run, and the aligned vector with α = 1 added to B at all positions makes B's residual
stream from layer ℓ on A's (so B's next-token distribution is A's).

The sweep runs every layer × a few coefficients as rows of a few batched forward passes; its best
cell is the one with the smallest push whose effect reaches about 1 (`EFFECT_REACHED`), marked as
an overshoot when the effect runs far past 1 (`OVERSHOOT`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..core.backend import Intervention
from ..core.capture import Capture
from ..core.errors import PromptError, SettingsError
from ..core.models import LoadedModel
from ..core.sites import Site
from ..core.tokens import encode, readable_token, typed_token
from .common.decode import DEFAULT_SETTINGS, Continuation, GenerationSettings, continuation_of, generate_ids
from .common.metric import TokenRef
from .common.rows import patched_rows
from .common.vector import SteeringVector, load_vector

VECTOR_MODES = ("last", "mean", "aligned")
APPLY_TO = ("all", "prompt")  # every position (generated tokens too), or only the prompt's
DEFAULT_ALPHAS = (-1.0, 1.0, 2.0, 4.0)
NEUTRAL_TEXT = "The weather was mild on Tuesday, and the shops opened at nine as usual."
RANDOM_SEED = 0
MAX_PUSH = 50.0  # α‖v‖ / ‖h‖ beyond this is refused: fifty times the residual's own norm
FLIP_GRID = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
FLIP_BISECTIONS = 6
EFFECT_REACHED = 0.9  # a sweep cell whose effect is at least this "reaches" A
OVERSHOOT = 1.5  # … and one beyond this overshoots
LN2 = math.log(2.0)
Progress = Callable[[float], None]


def steering_vector(loaded: LoadedModel, cap_a: Capture, cap_b: Capture, layer: int,
                    mode: str = "last") -> SteeringVector:
    """h_A − h_B at residual `layer`, read as `mode` says (see the module docstring)."""
    site = Site.residual_at(layer, loaded.n_layers)
    if mode not in VECTOR_MODES:
        raise SettingsError(f"The vector must be one of {', '.join(VECTOR_MODES)}, not '{mode}'.")
    h_a, h_b = cap_a.residual[layer].float(), cap_b.residual[layer].float()
    if mode == "last":
        value = h_a[-1] - h_b[-1]
    elif mode == "mean":
        value = h_a.mean(0) - h_b.mean(0)
    else:
        if cap_a.n_tokens != cap_b.n_tokens:
            raise SettingsError(
                f"An aligned vector needs A and B of the same length in tokens (A has {cap_a.n_tokens}, "
                f"B has {cap_b.n_tokens}). Use 'last' or 'mean', or make the prompts the same length."
            )
        value = h_a - h_b
    return SteeringVector(layer, mode, value.cpu(), site.name, loaded.name)


def random_like(vector: SteeringVector, seed: int = RANDOM_SEED) -> torch.Tensor:
    """A random direction with the same norm as the vector (per position for an aligned one)."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(vector.value.shape, generator=gen)
    return noise / noise.norm(dim=-1, keepdim=True) * vector.value.float().norm(dim=-1, keepdim=True)


def steering_interventions(
    n_layers: int, layer: int, values: Sequence[torch.Tensor | None], apply: str
) -> tuple[list[Intervention], list[Intervention]]:
    """(prompt-pass, per-step) interventions for a batch whose row i gets `values[i]` added at
    residual `layer` (None: left alone). A value [d] is added at every position of its row (and at
    each generated token when apply == 'all'); a value [pos, d] position by position, prompt only."""
    if apply not in APPLY_TO:
        raise SettingsError(f"Apply to must be one of {', '.join(APPLY_TO)}, not '{apply}'.")
    site = Site.residual_at(layer, n_layers)
    rows = [i for i, v in enumerate(values) if v is not None]
    if not rows:
        return [], []
    stacked = torch.stack([values[i].float() for i in rows])
    if stacked.dim() == 2:  # [n, d]: the same vector at every position of the row
        stacked = stacked[:, None, :]
        prompt = [Intervention(site, "add", stacked, rows=tuple(rows))]
        return prompt, (list(prompt) if apply == "all" else [])
    return [Intervention(site, "add", stacked, rows=tuple(rows))], []


def _check_finite(logits: torch.Tensor, alpha: float) -> None:
    if not torch.isfinite(logits).all():
        raise SettingsError(
            f"α = {alpha:g} drives the model's activations to inf or NaN. Use a smaller coefficient."
        )


def check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
        raise SettingsError(f"The coefficient α must be a finite number (got {alpha!r}).")
    return float(alpha)


def _check_target(vector: SteeringVector, target: Capture) -> None:
    if vector.aligned and vector.value.shape[0] != target.n_tokens:
        raise SettingsError(
            f"The aligned vector has {vector.value.shape[0]} positions but the target prompt has "
            f"{target.n_tokens} tokens. Use 'last' or 'mean', or a target of the same length."
        )


@dataclass(frozen=True)
class Metric:
    """The tokens of the logit difference; None when A and B predict the same token and none were named."""

    answer: TokenRef | None
    wrong: TokenRef | None
    note: str | None = None

    def diff(self, logits: torch.Tensor) -> torch.Tensor | None:
        if self.answer is None or self.wrong is None:
            return None
        return logits[..., self.answer.id].double() - logits[..., self.wrong.id].double()


def metric_tokens(loaded: LoadedModel, cap_a: Capture, cap_b: Capture,
                  answer: str | int | None = None, wrong: str | int | None = None) -> Metric:
    """answer = A's top-1 and wrong = B's top-1 unless named (one token each; '␣' = a space; or a
    token id)."""
    tok = loaded.tokenizer

    def resolve(named: str | int | None, logits: torch.Tensor) -> TokenRef:
        if isinstance(named, int) and not isinstance(named, bool):
            if not 0 <= named < loaded.vocab_size:
                raise PromptError(
                    f"Token id {named} does not exist; the vocabulary has {loaded.vocab_size:,}."
                )
            return TokenRef(readable_token(tok, named), named)
        if named:
            single = typed_token(tok, named)
            return TokenRef(single.readable, single.id)
        top = int(logits.argmax())
        return TokenRef(readable_token(tok, top), top)

    a, w = resolve(answer, cap_a.final_logits), resolve(wrong, cap_b.final_logits)
    if a.id == w.id:
        if answer or wrong:
            raise PromptError(f"The two tokens are the same ('{a.token}'). Name two different tokens.")
        return Metric(None, None, f"A and B both predict '{a.token}' next, so there is no logit difference "
                                  "to show; name two tokens to measure one.")
    return Metric(a, w)


def _kl(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) in bits over the last dim, p = softmax(logits), q = softmax(reference)."""
    logp, logq = torch.log_softmax(logits.double(), -1), torch.log_softmax(reference.double(), -1)
    return ((logp.exp() * (logp - logq)).sum(-1) / LN2).clamp_min(0.0)


def residual_norm(capture: Capture, layer: int) -> float:
    """‖h[ℓ, −1]‖: the residual's norm at the last position (the scale a push is measured against)."""
    return float(capture.residual[layer][-1].float().norm())


def push_of(alpha: float, vector_norm: float, norm: float) -> float:
    """|α|·‖v‖ / ‖h‖ (inf for a zero residual)."""
    return abs(alpha) * vector_norm / norm if norm > 0 else math.inf


def check_push(alpha: float, vector_norm: float, target: Capture, layer: int) -> float:
    """The push of α·v on `target` at `layer`, refused above `MAX_PUSH` with the α that is allowed."""
    norm = residual_norm(target, layer)
    push = push_of(alpha, vector_norm, norm)
    if push > MAX_PUSH:
        allowed = MAX_PUSH * norm / vector_norm
        raise SettingsError(
            f"α = {alpha:g} would add a vector {push:.3g} times as long as the residual it is added to "
            f"(layer {layer}), which only makes gibberish; use |α| ≤ {allowed:.3g} (a push of at most "
            f"{MAX_PUSH:g}×)."
        )
    return push


@dataclass(frozen=True)
class Outcome:
    """The target run with one vector added (or none): its continuation and next-token effects."""

    name: str
    alpha: float
    continuation: Continuation
    logit_diff: float | None
    prob_answer: float | None
    prob_wrong: float | None
    kl: float  # KL(this ‖ unsteered) at the next token, bits
    side_kl: float  # mean KL(this ‖ unsteered) over the neutral text's positions, bits

    def to_dict(self) -> dict:
        return {"name": self.name, "alpha": self.alpha, "token_ids": list(self.continuation.token_ids),
                "text": self.continuation.text, "tokens": list(self.continuation.tokens),
                "characters": [g.to_dict() for g in self.continuation.characters],
                "logit_diff": self.logit_diff, "prob_answer": self.prob_answer, "prob_wrong": self.prob_wrong,
                "kl": self.kl, "side_effect_kl": self.side_kl}


@dataclass(frozen=True)
class SteerResult:
    """One steering run: unsteered, steered (+α), negated (−α) and random-control outcomes."""

    model: dict
    layer: int
    site: str
    alpha: float
    mode: str
    apply: str
    target: str  # "B" or the third prompt's text
    vector_norm: float
    metric: Metric
    metric_a: float | None
    metric_b: float | None
    unsteered: Outcome
    steered: Outcome
    negated: Outcome
    random: Outcome
    settings: GenerationSettings
    note: str | None = None
    push: float | None = None  # α‖v‖ / ‖h_T[ℓ, −1]‖

    @property
    def outcomes(self) -> tuple[Outcome, ...]:
        return (self.unsteered, self.steered, self.negated, self.random)

    def to_dict(self) -> dict:
        def tok(ref: TokenRef | None) -> dict | None:
            return None if ref is None else ref.to_dict()

        return {
            "layer": self.layer,
            "alpha": self.alpha,
            "site": self.site,
            "vector": {"mode": self.mode, "norm": self.vector_norm},
            "push": self.push,
            "apply_to": self.apply,
            "target": self.target,
            "unsteered": {"token_ids": list(self.unsteered.continuation.token_ids),
                          "text": self.unsteered.continuation.text},
            "steered": {"token_ids": list(self.steered.continuation.token_ids),
                        "text": self.steered.continuation.text},
            "effects": {
                "answer": tok(self.metric.answer),
                "wrong": tok(self.metric.wrong),
                "logit_diff": {o.name: o.logit_diff for o in self.outcomes} | {"a": self.metric_a,
                                                                                "b": self.metric_b},
                "prob_answer": {o.name: o.prob_answer for o in self.outcomes},
                "prob_wrong": {o.name: o.prob_wrong for o in self.outcomes},
                "kl": self.steered.kl,
                "kl_negated": self.negated.kl,
                "kl_random": self.random.kl,
                "side_effect_kl": {o.name: o.side_kl for o in self.outcomes},
                "kl_unit": "bits",
            },
            "outcomes": [o.to_dict() for o in self.outcomes],
            "model": dict(self.model),
            "settings": self.settings.to_dict(),
            "note": self.note,
        }


def _neutral_ids(loaded: LoadedModel) -> list[int]:
    return encode(loaded.tokenizer, NEUTRAL_TEXT, "auto")


def _side_effect_kl(
    loaded: LoadedModel, vector: SteeringVector, values: Sequence[torch.Tensor | None]
) -> list[float]:
    """Mean KL(row ‖ unsteered) over the neutral text's positions, each row steered at every position
    with its value (an aligned value by its mean over positions: the lengths differ)."""
    ids = _neutral_ids(loaded)
    flat = [None if v is None else (v.mean(0) if v.dim() == 2 else v) for v in values]
    prompt, _ = steering_interventions(loaded.n_layers, vector.layer, flat, "prompt")
    run = loaded.backend.run(torch.tensor([ids] * len(values)), interventions=prompt, all_positions=True)
    logits = run.logits
    base = logits[[i for i, v in enumerate(values) if v is None][0]]
    return [float(_kl(row, base).mean()) for row in logits]


def steer_captures(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    target: Capture | None = None,
    *,
    layer: int,
    alpha: float,
    mode: str = "last",
    apply: str = "all",
    answer: str | None = None,
    wrong: str | None = None,
    settings: GenerationSettings = DEFAULT_SETTINGS,
    vector_file: bytes | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> SteerResult:
    """Steer `target` (B when None) with α·(h_A − h_B) at residual `layer` (or the vector in
    `vector_file`), and measure the effects. Four rows of one batched continuation: unsteered, +α,
    −α and a random vector of the same norm. `progress(fraction, steered text so far)` hears each
    new token (an exception it raises stops the continuation)."""
    result, _ = _steer(loaded, cap_a, cap_b, target, layer=layer, alpha=alpha, mode=mode, apply=apply,
                       answer=answer, wrong=wrong, settings=settings, vector_file=vector_file,
                       progress=progress)
    return result


@dataclass(frozen=True)
class SteeredWithAnswer:
    """`steer_captures`'s result for B, and A's own (unsteered) continuation written as a fifth row
    of the same batched continuation (None when A and B differ in length: rows must be equal)."""

    steer: SteerResult
    answer_a: Continuation | None

    def to_dict(self) -> dict:
        return {"steer": self.steer.to_dict(),
                "answer_a": None if self.answer_a is None else self.answer_a.to_dict()}


def steer_with_answer(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    *,
    layer: int,
    alpha: float,
    mode: str = "last",
    apply: str = "all",
    answer: str | None = None,
    wrong: str | None = None,
    settings: GenerationSettings = DEFAULT_SETTINGS,
) -> SteeredWithAnswer:
    """B steered as `steer_captures` steers it, with A's greedy continuation as one more
    (unsteered) row of the same batch: a continuation at batch 1 is bound by reading the weights,
    so the fifth row costs a fraction of a run of its own (the Findings write both answers and the
    flip in one continuation). Row 0 is B's own continuation. A batch's rows are rounded apart
    from runs of their own (logits within 1e-4); the tokens are the same (both tested on every family)."""
    extra = (cap_a,) if len(cap_a.token_ids) == len(cap_b.token_ids) else ()
    result, others = _steer(loaded, cap_a, cap_b, None, layer=layer, alpha=alpha, mode=mode, apply=apply,
                            answer=answer, wrong=wrong, settings=settings, vector_file=None, others=extra)
    return SteeredWithAnswer(result, others[0] if others else None)


def _steer(
    loaded: LoadedModel, cap_a: Capture, cap_b: Capture, target: Capture | None, *, layer: int, alpha: float,
    mode: str, apply: str, answer: str | None, wrong: str | None, settings: GenerationSettings,
    vector_file: bytes | None, progress: Callable[[float, str], None] | None = None,
    others: Sequence[Capture] = (),
) -> tuple[SteerResult, tuple[Continuation, ...]]:
    """`steer_captures`, with `others` (prompts of the target's length) continued unsteered as
    rows 4, 5, … of the same batch; their continuations second."""
    alpha = check_alpha(alpha)
    tgt = cap_b if target is None else target
    if vector_file is not None:
        vector = load_vector(vector_file, loaded, layer)
    else:
        vector = steering_vector(loaded, cap_a, cap_b, layer, mode)
    _check_target(vector, tgt)
    if apply not in APPLY_TO:
        raise SettingsError(f"Apply to must be one of {', '.join(APPLY_TO)}, not '{apply}'.")
    v = vector.value.float()
    if not torch.isfinite(alpha * v).all():
        _check_finite(torch.tensor([math.nan]), alpha)
    push = check_push(alpha, vector.norm, tgt, vector.layer)
    metric = metric_tokens(loaded, cap_a, cap_b, answer, wrong)
    values: list[torch.Tensor | None] = [None, alpha * v, -alpha * v, alpha * random_like(vector)]
    prompt, steps = steering_interventions(loaded.n_layers, vector.layer, [*values, *[None] * len(others)],
                                           apply)
    on_token = None
    if progress is not None:
        def on_token(rows: Sequence[Sequence[int]]) -> None:
            steered = list(rows[1])  # row 1 is +α; the batch goes on while any row does
            progress(max(len(row) for row in rows) / settings.max_new_tokens,
                     loaded.tokenizer.decode(steered, skip_special_tokens=True))
    try:
        new, first = generate_ids(loaded, [tgt.token_ids] * 4 + [c.token_ids for c in others], settings,
                                  interventions=prompt, step_interventions=steps, on_token=on_token)
    except SettingsError as exc:
        if "inf or NaN" in str(exc):
            _check_finite(torch.tensor([math.nan]), alpha)
        raise
    first = first[:4]
    _check_finite(first, alpha)
    side = _side_effect_kl(loaded, vector, values)
    kls = _kl(first, first[0])
    diffs = metric.diff(first)
    probs = torch.softmax(first.double(), -1)
    outcomes = []
    for i, (name, a) in enumerate((("unsteered", 0.0), ("steered", alpha), ("negated", -alpha),
                                   ("random", alpha))):
        outcomes.append(Outcome(
            name=name, alpha=a, continuation=continuation_of(loaded, tgt.token_ids, new[i], settings),
            logit_diff=None if diffs is None else float(diffs[i]),
            prob_answer=None if metric.answer is None else float(probs[i, metric.answer.id]),
            prob_wrong=None if metric.wrong is None else float(probs[i, metric.wrong.id]),
            kl=float(kls[i]), side_kl=side[i],
        ))
    ma, mb = metric.diff(cap_a.final_logits), metric.diff(cap_b.final_logits)
    note = metric.note
    if vector.aligned:
        aligned_note = ("The aligned vector is added at the prompt's positions only; generated tokens have "
                        "no aligned position.")
        note = aligned_note if note is None else f"{note} {aligned_note}"
    extra = tuple(continuation_of(loaded, c.token_ids, new[4 + i], settings) for i, c in enumerate(others))
    return SteerResult(
        model=loaded.info(), layer=vector.layer, site=vector.site, alpha=alpha, mode=vector.mode,
        apply=apply, target="B" if target is None else target.text, vector_norm=vector.norm, metric=metric,
        metric_a=None if ma is None else float(ma), metric_b=None if mb is None else float(mb),
        unsteered=outcomes[0], steered=outcomes[1], negated=outcomes[2], random=outcomes[3],
        settings=settings, note=note, push=push,
    ), extra


@dataclass(frozen=True)
class SweepResult:
    """Next-token effects of α·v_ℓ added to the target at every layer ℓ = 0…L and each α.

    logit_diff[ℓ][j] and kl[ℓ][j] (bits) for alphas[j] (v_ℓ = h_A − h_B at layer ℓ, read as
    `mode`); shift = logit_diff − the unsteered one; effect = shift / (m_A − m_B) (None when the gap
    is ~0 or there is no logit difference); push = |α|·‖v_ℓ‖ / ‖h_T[ℓ, −1]‖ (`vector_norms`,
    `residual_norms` per layer).
    """

    model: dict
    mode: str
    apply: str
    alphas: tuple[float, ...]
    metric: Metric
    unsteered: float | None
    metric_a: float | None
    metric_b: float | None
    logit_diff: tuple[tuple[float | None, ...], ...]
    kl: tuple[tuple[float, ...], ...]
    random_kl: tuple[float, ...]  # per layer: a random vector of v_ℓ's norm at the largest |α|
    vector_norms: tuple[float, ...] = ()
    residual_norms: tuple[float, ...] = ()

    def effect(self, layer: int, j: int) -> float | None:
        diff = self.logit_diff[layer][j]
        if diff is None or self.unsteered is None or self.metric_a is None or self.metric_b is None:
            return None
        gap = self.metric_a - self.metric_b
        return None if abs(gap) < 1e-6 else (diff - self.unsteered) / gap

    def push(self, layer: int, j: int) -> float:
        return push_of(self.alphas[j], self.vector_norms[layer], self.residual_norms[layer])

    def reaches(self, layer: int, j: int) -> bool:
        """The cell moves B about all the way to A: effect ≥ `EFFECT_REACHED`."""
        effect = self.effect(layer, j)
        return effect is not None and effect >= EFFECT_REACHED

    def overshoot(self, layer: int, j: int) -> bool:
        """The cell moves B well past A: effect > `OVERSHOOT`."""
        effect = self.effect(layer, j)
        return effect is not None and effect > OVERSHOOT

    def best(self) -> tuple[int, float]:
        """The (layer, α) with the smallest push among the cells whose effect reaches about 1
        (`reaches`); with none, the largest effect toward A; with no logit difference, the largest KL."""
        cells = [(layer, j) for layer in range(len(self.kl)) for j in range(len(self.alphas))]
        reached = [c for c in cells if self.reaches(*c) and self.alphas[c[1]] > 0]
        if reached:
            layer, j = min(reached, key=lambda c: (self.push(*c), c))
        elif self.effect(0, 0) is not None:
            layer, j = max(cells, key=lambda c: self.effect(*c))
        else:
            layer, j = max(cells, key=lambda c: self.kl[c[0]][c[1]])
        return layer, self.alphas[j]

    def reading(self) -> str:
        """The best layer, in a plain sentence."""
        layer, alpha = self.best()
        j = self.alphas.index(alpha)
        kl = self.kl[layer][j]
        effect = self.effect(layer, j)
        random = f"a random vector of the same norm there: {self.random_kl[layer]:.3f} bits"
        if effect is None:
            return (f"The vector changes the target's next-token distribution most at layer {layer} "
                    f"(α = {alpha:g}: KL {kl:.3f} bits from the unsteered run; {random}).")
        assert self.metric.answer is not None and self.metric.wrong is not None
        moved = (f"logit['{self.metric.answer.token}'] − logit['{self.metric.wrong.token}'] moves "
                 f"{effect:.0%} of the way from B's value to A's")
        push = f"push {self.push(layer, j):.2f}× the residual's norm"
        if not self.reaches(layer, j):
            return (f"No cell moves B all the way to A; the furthest is layer {layer} at α = {alpha:g}: "
                    f"{moved} ({push}; KL {kl:.3f} bits; {random}).")
        over = " — an overshoot, past A's own value" if self.overshoot(layer, j) else ""
        return (f"The smallest push that moves B to A is at layer {layer}, α = {alpha:g} ({push}): {moved}"
                f"{over} (KL {kl:.3f} bits from the unsteered run; {random}).")

    def to_dict(self) -> dict:
        return {
            "model": dict(self.model), "mode": self.mode, "apply_to": self.apply, "alphas": list(self.alphas),
            "answer": None if self.metric.answer is None else self.metric.answer.to_dict(),
            "wrong": None if self.metric.wrong is None else self.metric.wrong.to_dict(),
            "unsteered": self.unsteered, "a": self.metric_a, "b": self.metric_b,
            "logit_diff": [list(r) for r in self.logit_diff], "kl": [list(r) for r in self.kl],
            "kl_unit": "bits",
            "effect": [[self.effect(layer, j) for j in range(len(self.alphas))]
                       for layer in range(len(self.kl))],
            "push": [[self.push(layer, j) for j in range(len(self.alphas))] for layer in range(len(self.kl))],
            "random_kl": list(self.random_kl),
            "best": dict(zip(("layer", "alpha"), self.best(), strict=True))
            | {"overshoot": self.overshoot(self.best()[0], self.alphas.index(self.best()[1]))},
            "reading": self.reading(),
        }


def next_token_logits(
    loaded: LoadedModel, target: Capture, cells: Sequence[tuple[int, torch.Tensor]], *,
    rows: int | None = None, progress: Progress | None = None, alpha: float = 1.0,
) -> torch.Tensor:
    """The target's next-token logits [len(cells), vocab] with each cell's value [d] (or [pos, d])
    added at its layer's residual, at the prompt's positions: one row of a batched pass per cell,
    `rows` rows per pass (default: memory-bounded). A row steered at residual ℓ starts at block ℓ
    from the target's captured residual (`patched_rows`): blocks below ℓ would compute the
    target's own run. `alpha` names the coefficient in the message when a row overflows."""
    if not cells:
        return torch.empty(0, loaded.vocab_size)

    def changes(indices: Sequence[int]) -> list[Intervention]:
        chunk = [cells[i] for i in indices]
        interventions: list[Intervention] = []
        for layer, dims in sorted({(c[0], c[1].dim()) for c in chunk}):  # a [d] and a [pos, d] apart
            values = [v if (c_layer, v.dim()) == (layer, dims) else None for c_layer, v in chunk]
            interventions.extend(steering_interventions(loaded.n_layers, layer, values, "prompt")[0])
        return interventions

    logits = patched_rows(loaded, target, [layer for layer, _ in cells], changes, lambda run: run.logits,
                          step=rows, progress=progress)
    _check_finite(logits, alpha)
    return logits


def steering_sweep(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    target: Capture | None = None,
    *,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    mode: str = "last",
    answer: str | None = None,
    wrong: str | None = None,
    progress: Progress | None = None,
    rows: int | None = None,
) -> SweepResult:
    """Every layer × every α (plus a random control per layer), at the target's next token only:
    one row of a batched forward pass per cell (`next_token_logits`). A coefficient whose push is
    beyond `MAX_PUSH` at some layer is refused."""
    tgt = cap_b if target is None else target
    alphas = tuple(check_alpha(a) for a in alphas)
    if not alphas:
        raise SettingsError("Give at least one coefficient α for the sweep.")
    vectors = [steering_vector(loaded, cap_a, cap_b, layer, mode) for layer in range(loaded.n_layers + 1)]
    _check_target(vectors[0], tgt)
    metric = metric_tokens(loaded, cap_a, cap_b, answer, wrong)
    big = max(alphas, key=abs)
    for vector in vectors:
        check_push(big, vector.norm, tgt, vector.layer)
    cells: list[tuple[int, torch.Tensor]] = []  # (layer, value added) per row
    for layer, vector in enumerate(vectors):
        cells.extend((layer, a * vector.value.float()) for a in alphas)
        cells.append((layer, big * random_like(vector)))
    every = next_token_logits(loaded, tgt, cells, rows=rows, progress=progress, alpha=big)
    kls = _kl(every, tgt.final_logits[None]).tolist()
    diffs = metric.diff(every)
    width = len(alphas) + 1
    ld, kl, rnd = [], [], []
    for layer in range(len(vectors)):
        row = slice(layer * width, layer * width + len(alphas))
        ld.append(tuple(None if diffs is None else float(d) for d in (diffs[row] if diffs is not None
                                                                      else [None] * len(alphas))))
        kl.append(tuple(kls[row]))
        rnd.append(kls[layer * width + len(alphas)])
    un, ma, mb = (metric.diff(c.final_logits) for c in (tgt, cap_a, cap_b))
    return SweepResult(
        model=loaded.info(), mode=mode, apply="prompt", alphas=alphas, metric=metric,
        unsteered=None if un is None else float(un), metric_a=None if ma is None else float(ma),
        metric_b=None if mb is None else float(mb), logit_diff=tuple(ld), kl=tuple(kl), random_kl=tuple(rnd),
        vector_norms=tuple(v.norm for v in vectors),
        residual_norms=tuple(residual_norm(tgt, v.layer) for v in vectors),
    )


# --- Steer-to-flip ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlipLayer:
    """The smallest α ≥ 0 found at one layer for which B's steered top-1 is A's answer.

    alpha / push: None when no α of the grid (within `MAX_PUSH`) flips it; below: the largest α
    run below `alpha` that did not flip (0 when α = 0 is B itself); prob_answer: the answer's
    probability at that α; top: B's steered top-1 at that α (at the largest α tried when none flips)."""

    layer: int
    alpha: float | None
    below: float | None
    push: float | None
    vector_norm: float
    residual_norm: float
    prob_answer: float | None
    top: str

    def to_dict(self) -> dict:
        return {"layer": self.layer, "alpha": self.alpha, "below": self.below, "push": self.push,
                "vector_norm": self.vector_norm, "residual_norm": self.residual_norm,
                "prob_answer": self.prob_answer, "top": self.top}


@dataclass(frozen=True)
class FlipSearch:
    """Steer-to-flip for every layer (module docstring): B is steered with α·(h_A − h_B)_ℓ (`mode`)
    at the prompt's positions; flipped = B's next-token top-1 becomes `answer` (A's top-1)."""

    model: dict
    mode: str
    answer: TokenRef
    b_top: TokenRef
    grid: tuple[float, ...]
    bisections: int
    layers: tuple[FlipLayer, ...]

    @property
    def best(self) -> FlipLayer | None:
        """The layer that flips B with the smallest push (None: no layer does)."""
        flipped = [f for f in self.layers if f.push is not None]
        return min(flipped, key=lambda f: (f.push, f.layer)) if flipped else None

    def reading(self) -> str:
        best = self.best
        if best is None:
            return (f"No layer makes B say '{self.answer.token}' with α up to {self.grid[-1]:g} (pushes up "
                    f"to {MAX_PUSH:g}× the residual's norm): steering along A − B does not flip this pair.")
        return (f"Adding α·(h_A − h_B) at layer {best.layer} with α = {best.alpha:g} makes B's next token "
                f"'{self.answer.token}' (p = {best.prob_answer:.2f}) instead of '{self.b_top.token}': a push "
                f"of {best.push:.2f}× the residual's norm there, the smallest of any layer.")

    def to_dict(self) -> dict:
        best = self.best
        return {"model": dict(self.model), "mode": self.mode, "answer": self.answer.to_dict(),
                "b_top": self.b_top.to_dict(), "grid": list(self.grid), "bisections": self.bisections,
                "layers": [f.to_dict() for f in self.layers],
                "best": None if best is None else best.to_dict(),
                "reading": self.reading()}


def _tested(alpha: float) -> float:
    """α as it is run and reported: 4 significant digits, so `--alpha` given the printed value
    runs exactly the α the search saw flip."""
    return float(f"{alpha:.4g}")


def steer_to_flip(
    loaded: LoadedModel,
    cap_a: Capture,
    cap_b: Capture,
    *,
    mode: str = "last",
    answer: str | int | None = None,
    layers: Sequence[int] | None = None,
    grid: Sequence[float] = FLIP_GRID,
    bisections: int = FLIP_BISECTIONS,
    rows: int | None = None,
    progress: Progress | None = None,
) -> FlipSearch:
    """The smallest α ≥ 0 per layer (all layers 0…L by default) at which B's steered next-token
    top-1 is A's answer (module docstring). Grid values whose push exceeds `MAX_PUSH` are not run."""
    grid = tuple(sorted(_tested(check_alpha(a)) for a in grid))
    if not grid or grid[0] < 0:
        raise SettingsError("The flip search needs coefficients α ≥ 0.")
    metric = metric_tokens(loaded, cap_a, cap_b, answer, None)
    if metric.answer is None or metric.wrong is None:
        raise PromptError(f"{metric.note} There is nothing to flip.")
    target_id = metric.answer.id
    chosen = list(range(loaded.n_layers + 1)) if layers is None else list(layers)
    vectors = {layer: steering_vector(loaded, cap_a, cap_b, layer, mode) for layer in chosen}
    _check_target(next(iter(vectors.values())), cap_b)
    norms = {layer: residual_norm(cap_b, layer) for layer in chosen}
    allowed = {layer: [a for a in grid if push_of(a, vectors[layer].norm, norms[layer]) <= MAX_PUSH]
               for layer in chosen}
    cells = [(layer, a) for layer in chosen for a in allowed[layer]]
    total_rows = len(cells) + bisections * len(chosen)
    done = 0

    def tick(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(1.0, done / max(total_rows, 1)))

    def run(batch: list[tuple[int, float]]) -> torch.Tensor:
        values = [(layer, a * vectors[layer].value.float()) for layer, a in batch]
        logits = next_token_logits(loaded, cap_b, values, rows=rows,
                                   alpha=max((a for _, a in batch), default=1.0))
        tick(len(batch))
        return logits

    logits = run(cells)
    found: dict[int, tuple[float, float, torch.Tensor]] = {}  # layer → (lo, hi, logits at hi)
    last: dict[int, torch.Tensor] = {}
    for (layer, a), row in zip(cells, logits, strict=True):
        last[layer] = row
        if layer not in found and int(row.argmax()) == target_id:
            below = [g for g in allowed[layer] if g < a]
            found[layer] = (below[-1] if below else 0.0, a, row)
    for _ in range(bisections):
        pending = []
        for layer, (lo, hi, _) in found.items():
            mid = _tested((lo + hi) / 2)
            if lo < mid < hi:
                pending.append((layer, mid))
        if not pending:
            break
        for (layer, mid), row in zip(pending, run(pending), strict=True):
            lo, hi, at_hi = found[layer]
            found[layer] = (lo, mid, row) if int(row.argmax()) == target_id else (mid, hi, at_hi)
    flips = []
    for layer in chosen:
        vector_norm = vectors[layer].norm
        if layer in found:
            lo, hi, row = found[layer]
            probs = torch.softmax(row.double(), -1)
            flips.append(FlipLayer(layer, hi, lo, push_of(hi, vector_norm, norms[layer]), vector_norm,
                                   norms[layer], float(probs[target_id]), metric.answer.token))
        else:
            row = last.get(layer)
            top = "" if row is None else readable_token(loaded.tokenizer, int(row.argmax()))
            flips.append(FlipLayer(layer, None, None, None, vector_norm, norms[layer], None, top))
    return FlipSearch(model=loaded.info(), mode=mode, answer=metric.answer, b_top=metric.wrong, grid=grid,
                      bisections=bisections, layers=tuple(flips))
