"""SAE features of two prompts side by side: which features each lights up, shared and different.

For an SAE reading residual ℓ (lib.analyses.common.sae) and captures A and B:

    f_A = encode(x_A[ℓ])   [pos_A, d_sae]     f_B = encode(x_B[ℓ])   [pos_B, d_sae]

  top A / top B   the `top` largest f[last] (the last position, where the next token is read)
  shared          features active (> 0) at the last position of both, by |f_A[last] − f_B[last]|
  only A / only B features active at the last position of one prompt alone, by the same |Δ|
  heatmaps        f[:, i] at every position for the features that peak highest over positions
                  1… of either prompt, plus those in the lists above (rows = features)
  FVU             per prompt (SAE.fvu), so nobody reads features off an SAE that does not fit
  steering        v = W_dec[i] [d_in], the feature's decoder direction in the residual's units at
                  the SAE's residual ℓ: since x̂ = Σ_j f_j W_dec[j] + b_dec, adding α·v to the
                  residual at ℓ adds what the SAE writes for feature i firing at α
                  (`feature_steering_vector`, for the Steering page's activation addition)

Each feature carries its activation density over the SAE's training tokens when the SAE has
precomputed feature data (the shipped SAEs do): a contrast ranking favours features that fire on
everything, and the density says which those are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..core.capture import Capture
from ..core.errors import SettingsError
from .common.metric import MetricPair, TokenRef
from .common.sae import SAE, FeatureBook, promoted_words
from .common.vector import SteeringVector


@dataclass(frozen=True)
class FeatureRow:
    """One feature at the last position of both prompts."""

    feature: int
    activation_a: float
    activation_b: float
    density: float | None
    label: str

    @property
    def delta(self) -> float:
        return self.activation_a - self.activation_b

    def to_dict(self, which: str | None = None) -> dict:
        """`which` = "a"/"b": the issue's {"feature", "activation", "label"} for one prompt's list."""
        if which is not None:
            activation = self.activation_a if which == "a" else self.activation_b
            return {"feature": self.feature, "activation": activation, "label": self.label,
                    "density": self.density}
        return {"feature": self.feature, "activation_a": self.activation_a, "activation_b": self.activation_b,
                "delta": self.delta, "density": self.density, "label": self.label}


@dataclass(frozen=True)
class FeatureComparison:
    """SAE features of prompts A and B at one residual.

    heat_a: [len(heat_features)][pos_A] activations (heat_b likewise for B), rows in the order of
    `heat_features`; `fvu_a`/`fvu_b` None for prompts too short to measure (under 3 tokens).
    """

    residual: int
    hook_name: str
    sae_path: str
    d_sae: int
    architecture: str
    fvu_a: float | None
    fvu_b: float | None
    top_a: tuple[FeatureRow, ...]
    top_b: tuple[FeatureRow, ...]
    shared: tuple[FeatureRow, ...]
    only_a: tuple[FeatureRow, ...]
    only_b: tuple[FeatureRow, ...]
    tokens_a: tuple[str, ...]
    tokens_b: tuple[str, ...]
    heat_features: tuple[int, ...]
    heat_a: tuple[tuple[float, ...], ...]
    heat_b: tuple[tuple[float, ...], ...]
    labels: tuple[tuple[int, str], ...]
    l0_a: float
    l0_b: float

    def label(self, feature: int) -> str:
        return dict(self.labels).get(feature, "")

    @property
    def heat_bound(self) -> float:
        """The top of the heatmaps' colour scale: the largest activation at positions 1… of either
        prompt (all positions of a one-token prompt). Position 0 lies outside what an SAE is trained
        and measured on (its residual is the first token's, often orders of magnitude larger), so it
        would wash out every other cell; it is drawn clipped at this bound."""
        values = [v for rows in (self.heat_a, self.heat_b) for row in rows for v in (row[1:] or row)]
        return max(values, default=0.0)

    def to_dict(self) -> dict:
        """The CLI's JSON (issue 13): layer, sae, top lists of A and B, shared / only-A / only-B."""
        return {
            "layer": self.residual,
            "sae": {"path": self.sae_path, "hook_name": self.hook_name, "d_sae": self.d_sae,
                    "architecture": self.architecture, "fvu": {"a": self.fvu_a, "b": self.fvu_b},
                    "l0": {"a": self.l0_a, "b": self.l0_b}},
            "a": [r.to_dict("a") for r in self.top_a],
            "b": [r.to_dict("b") for r in self.top_b],
            "shared": [r.to_dict() for r in self.shared],
            "only_a": [r.to_dict() for r in self.only_a],
            "only_b": [r.to_dict() for r in self.only_b],
        }


def encode_capture(sae: SAE, capture: Capture) -> torch.Tensor:
    """f [pos, d_sae] of the capture's residual at the SAE's site."""
    residual = sae.residual
    if residual >= capture.residual.shape[0]:
        raise SettingsError(
            f"The SAE reads residual {residual}; this model has residuals 0…{capture.residual.shape[0] - 1}."
        )
    return sae.encode(capture.residual[residual].float().cpu())


def compare_features(
    sae: SAE, capture_a: Capture, capture_b: Capture, *, top: int = 10, book: FeatureBook | None = None,
    heat_rows: int = 12,
) -> FeatureComparison:
    """SAE features of A and B at the SAE's residual (module docstring). `book`: the SAE's feature
    data, for densities and labels."""
    if top < 1:
        raise SettingsError(f"Top-N must be at least 1, not {top}.")
    x_a = capture_a.residual[sae.residual].float().cpu()
    x_b = capture_b.residual[sae.residual].float().cpu()
    f_a, f_b = encode_capture(sae, capture_a), encode_capture(sae, capture_b)
    last_a, last_b = f_a[-1], f_b[-1]

    def row(i: int) -> FeatureRow:
        density = book.density(i) if book is not None and i < book.n_features else None
        label = book.label(i) if book is not None and i < book.n_features else ""
        return FeatureRow(i, float(last_a[i]), float(last_b[i]), density, label)

    def ranked(mask: torch.Tensor, score: torch.Tensor) -> tuple[FeatureRow, ...]:
        idx = mask.nonzero().flatten()
        order = idx[score[idx].argsort(descending=True, stable=True)][:top]
        return tuple(row(int(i)) for i in order)

    on_a, on_b = last_a > 0, last_b > 0
    delta = (last_a - last_b).abs()
    top_a = ranked(on_a, last_a)
    top_b = ranked(on_b, last_b)
    shared = ranked(on_a & on_b, delta)
    only_a = ranked(on_a & ~on_b, delta)
    only_b = ranked(on_b & ~on_a, delta)

    heat: list[int] = []
    for f in (f_a, f_b):
        body = f[1:] if len(f) > 1 else f
        peak = body.max(0).values
        for i in peak.argsort(descending=True)[:heat_rows // 2].tolist():
            if peak[i] > 0 and i not in heat:
                heat.append(i)
    for r in (*top_a[:3], *top_b[:3], *only_a[:3], *only_b[:3]):
        if r.feature not in heat:
            heat.append(r.feature)
    listed = {r.feature for group in (top_a, top_b, shared, only_a, only_b) for r in group} | set(heat)
    labels = tuple((i, book.label(i)) for i in sorted(listed)) if book is not None else ()

    def rows_of(f: torch.Tensor) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(float(v) for v in f[:, i]) for i in heat)

    return FeatureComparison(
        residual=sae.residual, hook_name=sae.hook_name, sae_path=sae.path, d_sae=sae.d_sae,
        architecture=sae.architecture, fvu_a=sae.fvu(x_a, f_a), fvu_b=sae.fvu(x_b, f_b),
        top_a=top_a, top_b=top_b, shared=shared, only_a=only_a, only_b=only_b,
        tokens_a=capture_a.tokens, tokens_b=capture_b.tokens, heat_features=tuple(heat),
        heat_a=rows_of(f_a), heat_b=rows_of(f_b), labels=labels,
        l0_a=float((f_a[1:] > 0).sum(-1).float().mean()) if len(f_a) > 1 else float((f_a > 0).sum()),
        l0_b=float((f_b[1:] > 0).sum(-1).float().mean()) if len(f_b) > 1 else float((f_b > 0).sum()),
    )


@dataclass(frozen=True)
class FeatureTrace:
    """One feature of one SAE on both prompts, position by position, and where it comes from:
    its pre-activation w_enc[:, i]·(x_ℓ − b_dec) + b_enc[i] on the residual at every layer ℓ (the
    encoder direction read as a probe at each layer; at the SAE's own layer it is the feature's
    input) at the last position of each prompt."""

    feature: int
    residual: int
    activations_a: tuple[float, ...]
    activations_b: tuple[float, ...]
    across_layers_a: tuple[float, ...]
    across_layers_b: tuple[float, ...]

    def to_dict(self) -> dict:
        return {"feature": self.feature, "layer": self.residual, "a": list(self.activations_a),
                "b": list(self.activations_b), "across_layers": {"a": list(self.across_layers_a),
                                                                 "b": list(self.across_layers_b)}}


def trace_feature(sae: SAE, capture_a: Capture, capture_b: Capture, feature: int) -> FeatureTrace:
    """The feature's activation at every position of A and B, and its pre-activation across layers."""
    if not 0 <= feature < sae.d_sae:
        raise SettingsError(f"There is no feature {feature}; this SAE has features 0…{sae.d_sae - 1}.")
    w, b = sae.W_enc[:, feature], sae.b_enc[feature]
    shift = sae.b_dec if sae.apply_b_dec_to_input else torch.zeros_like(sae.b_dec)

    def across(c: Capture) -> tuple[float, ...]:
        last = c.residual[:, -1].float().cpu()  # [L+1, d]
        return tuple(float(v) for v in (last - shift) @ w + b)

    return FeatureTrace(
        feature=feature, residual=sae.residual,
        activations_a=tuple(float(v) for v in encode_capture(sae, capture_a)[:, feature]),
        activations_b=tuple(float(v) for v in encode_capture(sae, capture_b)[:, feature]),
        across_layers_a=across(capture_a), across_layers_b=across(capture_b),
    )


def features_of_prompts(
    loaded, text_a: str, text_b: str, *, layer: int | None = None, sae_path: str | None = None,
    top: int = 10, bos: str = "auto", any_model: bool = False,
) -> FeatureComparison:
    """Capture both prompts and compare their features with the SAE at residual `layer` (the
    shipped one, or the one at `sae_path`; layer None = the SAE's own / the first shipped)."""
    from ..core.capture import capture
    from ..core.tokens import check_prompts
    from .common.sae import feature_book, sae_for_layer

    check_prompts(text_a, text_b)
    if top < 1:
        raise SettingsError(f"Top-N must be at least 1, not {top}.")
    sae = sae_for_layer(loaded, layer, sae_path, any_model=any_model)
    a, b = capture(loaded, text_a, bos), capture(loaded, text_b, bos)
    return compare_features(sae, a, b, top=top, book=feature_book(sae.path))


def features_of_captures(
    model_a, model_b, capture_a: Capture, capture_b: Capture, *, layer: int | None = None,
    sae_path: str | None = None, top: int = 10, any_model: bool = False,
) -> FeatureComparison:
    """`compare_features` for two captures that may come from two models (base vs fine-tune):
    the SAE must fit both (`SAE.check_fits`)."""
    from .common.sae import feature_book, sae_for_layer

    sae = sae_for_layer(model_a, layer, sae_path, any_model=any_model)
    if model_b is not model_a:
        sae.check_fits(model_b, any_model=any_model)
    return compare_features(sae, capture_a, capture_b, top=top, book=feature_book(sae.path))


def trace_of_captures(
    model_a, capture_a: Capture, capture_b: Capture, feature: int, *, layer: int | None = None,
    sae_path: str | None = None, any_model: bool = False,
) -> FeatureTrace:
    """`trace_feature` with the SAE chosen as in `features_of_captures`."""
    from .common.sae import sae_for_layer

    return trace_feature(sae_for_layer(model_a, layer, sae_path, any_model=any_model), capture_a, capture_b,
                         feature)


def feature_steering_vector(
    loaded, feature: int, *, layer: int | None = None, sae_path: str | None = None, any_model: bool = False,
) -> SteeringVector:
    """The decoder direction of SAE feature `feature` as a steering vector at the SAE's residual:
    value = W_dec[feature] [d_model] (the module docstring), mode "feature". The SAE is chosen as in
    `features_of_captures`; a feature the SAE does not have is refused."""
    from ..core.sites import Site
    from .common.sae import sae_for_layer

    sae = sae_for_layer(loaded, layer, sae_path, any_model=any_model)
    if not 0 <= feature < sae.d_sae:
        raise SettingsError(f"There is no feature {feature}; this SAE has features 0…{sae.d_sae - 1}.")
    site = Site.residual_at(sae.residual, loaded.n_layers)
    return SteeringVector(sae.residual, "feature", sae.W_dec[feature].float().clone(), site.name, loaded.name,
                          source=f"SAE feature {feature} ({sae.hook_name})")


# --- Feature attribution of the difference -------------------------------------------------------


@dataclass(frozen=True)
class AttributedFeature:
    """One SAE feature's share of the attribution-patching estimate (see `attribute_features`).

    score: Σ_p (f_i^A − f_i^B)(p) · (W_dec[i] · g_B(p)), in units of the metric (logit difference)
    activation_a / activation_b: f_i at each prompt's last position
    """

    feature: int
    score: float
    activation_a: float
    activation_b: float
    density: float | None
    label: str
    promotes: tuple[str, ...]
    generic: bool

    def to_dict(self) -> dict:
        return {"feature": self.feature, "score": self.score, "activation_a": self.activation_a,
                "activation_b": self.activation_b, "density": self.density, "label": self.label,
                "promotes": list(self.promotes), "generic": self.generic}


@dataclass(frozen=True)
class FeatureAttribution:
    """Which SAE features carry the difference A − B into the metric at the SAE's residual ℓ
    (attribution patching on SAE features, Marks et al. 2024, "Sparse feature circuits").

    At the SAE's site x = x̂ + ε, x̂ = Σ_i f_i W_dec[i] + b_dec, and g_B(p) = ∂m/∂x(p) at B's run
    (m = logit[answer] − logit[wrong] at B's last position; one forward and one backward pass):

        score_i = Σ_p (f_i^A − f_i^B)(p) · (W_dec[i] · g_B(p))
        error   = Σ_p (ε^A − ε^B)(p) · g_B(p)
        total   = Σ_p (x^A − x^B)(p) · g_B(p) = Σ_i score_i + error    (b_dec cancels; exact)

    `total` is the attribution-patching estimate of patching A's whole residual ℓ into B; the sum
    runs over every position when A and B have the same number of tokens (`positions` = "all"),
    else over the last position only ("last", and `note` says so). `features` holds the `top`
    features by |score|, largest first; `features_sum` is Σ_i score_i over all of them.
    """

    residual: int
    hook_name: str
    sae_path: str
    answer: TokenRef
    wrong: TokenRef
    metric_a: float
    metric_b: float
    positions: str
    features: tuple[AttributedFeature, ...]
    features_sum: float
    error: float
    total: float
    fvu_a: float | None
    fvu_b: float | None
    note: str | None

    @property
    def gap(self) -> float:
        """m_A − m_B: what exact patching of everything would move."""
        return self.metric_a - self.metric_b

    def to_dict(self) -> dict:
        return {
            "layer": self.residual, "sae": {"path": self.sae_path, "hook_name": self.hook_name,
                                            "fvu": {"a": self.fvu_a, "b": self.fvu_b}},
            "answer": self.answer.to_dict(), "wrong": self.wrong.to_dict(),
            "metric": {"a": self.metric_a, "b": self.metric_b}, "positions": self.positions,
            "features": [f.to_dict() for f in self.features], "features_sum": self.features_sum,
            "error": self.error, "total": self.total, "note": self.note,
        }


@dataclass(frozen=True, eq=False)
class MetricGradients:
    """g_B(p) = ∂m/∂x(p) at B's run for residuals `grads` (residual → [pos_B, d_model]), from one
    forward and one backward pass, and the metric pair m is read by."""

    pair: MetricPair
    grads: dict[int, torch.Tensor]


def metric_gradients(
    loaded, cap_a: Capture, cap_b: Capture, residuals: tuple[int, ...], *, answer: str | int | None = None,
    wrong: str | int | None = None,
) -> MetricGradients:
    """The gradient of m = logit[answer] − logit[wrong] at B's last position with respect to B's
    residuals `residuals` (one backward pass for all of them); answer / wrong resolve as the
    Patching page's, and a pair whose metric is the same for A and B is refused, as there."""
    from ..core.sites import Site
    from .common.metric import metric_pair

    pair = metric_pair(loaded, cap_a, cap_b, answer, wrong)
    sites = {r: Site.residual_at(r, loaded.n_layers) for r in residuals}
    metric = pair.metric()
    found = loaded.backend.gradients(
        torch.tensor([list(cap_b.token_ids)], dtype=torch.long), list(sites.values()),
        lambda logits: metric(logits).sum(),
    )
    return MetricGradients(pair, {r: found.grads[site][0].double().cpu() for r, site in sites.items()})


def attribute_features(
    loaded, sae: SAE, cap_a: Capture, cap_b: Capture, *, answer: str | int | None = None,
    wrong: str | int | None = None, top: int = 10, book: FeatureBook | None = None,
    gradients: MetricGradients | None = None,
) -> FeatureAttribution:
    """Rank the SAE's features by their attribution to m_A − m_B (the `FeatureAttribution`
    docstring); answer / wrong as `metric_gradients` resolves them. `gradients`: taken already
    (at the SAE's residual among others), so no pass runs here."""
    if top < 1:
        raise SettingsError(f"Top-N must be at least 1, not {top}.")
    if gradients is None or sae.residual not in gradients.grads:
        gradients = metric_gradients(loaded, cap_a, cap_b, (sae.residual,), answer=answer, wrong=wrong)
    pair = gradients.pair
    grad = gradients.grads[sae.residual]  # [pos_B, d]
    x_a = cap_a.residual[sae.residual].double().cpu()
    x_b = cap_b.residual[sae.residual].double().cpu()
    f_a, f_b = encode_capture(sae, cap_a).double(), encode_capture(sae, cap_b).double()
    aligned = cap_a.n_tokens == cap_b.n_tokens
    if not aligned:
        x_a, x_b, f_a, f_b, grad = x_a[-1:], x_b[-1:], f_a[-1:], f_b[-1:], grad[-1:]
    w_dec, b_dec = sae.W_dec.double(), sae.b_dec.double()
    err_a, err_b = x_a - (f_a @ w_dec + b_dec), x_b - (f_b @ w_dec + b_dec)
    scores = ((f_a - f_b) * (grad @ w_dec.T)).sum(0)  # [d_sae]
    error = float(((err_a - err_b) * grad).sum())
    total = float(((x_a - x_b) * grad).sum())
    order = scores.abs().argsort(descending=True, stable=True)[:top]
    last_a, last_b = f_a[-1], f_b[-1]

    def row(i: int) -> AttributedFeature:
        card = book.card(i) if book is not None and i < book.n_features else None
        return AttributedFeature(
            feature=i, score=float(scores[i]), activation_a=float(last_a[i]), activation_b=float(last_b[i]),
            density=None if card is None else card.density, label="" if card is None else card.label,
            promotes=() if card is None else promoted_words(card), generic=card is not None and card.generic,
        )

    note = None if aligned else (
        f"A has {cap_a.n_tokens} tokens and B has {cap_b.n_tokens}, so positions do not line up: the "
        "attribution sums over the last position only."
    )
    return FeatureAttribution(
        residual=sae.residual, hook_name=sae.hook_name, sae_path=sae.path, answer=pair.answer,
        wrong=pair.wrong, metric_a=pair.metric_a, metric_b=pair.metric_b,
        positions="all" if aligned else "last", features=tuple(row(int(i)) for i in order),
        features_sum=float(scores.sum()), error=error, total=total,
        fvu_a=sae.fvu(cap_a.residual[sae.residual].float().cpu()),
        fvu_b=sae.fvu(cap_b.residual[sae.residual].float().cpu()), note=note,
    )


def attribution_of_captures(
    loaded, cap_a: Capture, cap_b: Capture, *, layer: int | None = None, sae_path: str | None = None,
    answer: str | int | None = None, wrong: str | int | None = None, top: int = 10, any_model: bool = False,
) -> FeatureAttribution:
    """`attribute_features` with the SAE chosen as in `features_of_captures` (one model)."""
    from .common.sae import feature_book, sae_for_layer

    sae = sae_for_layer(loaded, layer, sae_path, any_model=any_model)
    return attribute_features(loaded, sae, cap_a, cap_b, answer=answer, wrong=wrong, top=top,
                              book=feature_book(sae.path))


def nearest_sae_layer(layers: Sequence[int], target: int) -> int:
    """The layer of `layers` nearest to `target` (ties: the earlier one)."""
    if not layers:
        raise SettingsError("There is no SAE to choose a layer from.")
    return min(layers, key=lambda layer: (abs(layer - target), layer))
