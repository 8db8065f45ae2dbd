"""Feature attribution of the difference (DESIGN.md: attribution patching on SAE features) and
the readable feature labels.

On every tiny family, with a random TopK SAE (so its reconstruction error is far from 0): the
features' scores and the error row add up exactly to Σ_p (x^A − x^B)(p) · g_B(p), and that total
is the first-order change of B's metric when A's residual is written in (a finite difference run
through the backend), so the gradient is the metric's.
"""

from __future__ import annotations

import pytest
import torch

from lib.analyses.common.sae import (
    Context,
    FeatureCard,
    example,
    feature_label,
    fires_on,
    is_word,
    load_sae,
    promoted_words,
    save_saelens,
)
from lib.analyses.features import attribute_features, nearest_sae_layer
from lib.analyses.steering import steering_interventions
from lib.core.capture import capture
from lib.core.errors import PromptError
from lib.core.sites import Site

ANSWER, WRONG = 5, 7  # token ids: tiny models' own top-1 tokens of A and B are often the same


def random_sae(d_in: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, 24, generator=g) / d_in**0.5,
            "b_enc": torch.randn(24, generator=g) * 0.1,
            "W_dec": torch.randn(24, d_in, generator=g) / 24**0.5,
            "b_dec": torch.randn(d_in, generator=g) * 0.1}


def topk_sae(loaded, folder, residual: int):
    w = random_sae(loaded.d_model, seed=1)
    site = Site.residual_at(residual, loaded.n_layers)
    return load_sae(save_saelens(
        folder, W_enc=w["W_enc"], b_enc=w["b_enc"], W_dec=w["W_dec"], b_dec=w["b_dec"], architecture="topk",
        k=4, hook_name=site.name, model_name=loaded.name, dtype="float32",
    ))


def metric_after_adding(loaded, cap_b, residual: int, delta: torch.Tensor) -> float:
    """m of B's run with `delta` [pos, d] added at residual `residual`."""
    prompt, _ = steering_interventions(loaded.n_layers, residual, [delta], "prompt")
    run = loaded.backend.run(torch.tensor([list(cap_b.token_ids)]), interventions=prompt)
    return float(run.logits[0, ANSWER].double() - run.logits[0, WRONG].double())


def test_features_and_error_add_up_to_the_attribution_patching_estimate(family_model, tmp_path):
    loaded = family_model
    residual = 1
    sae = topk_sae(loaded, tmp_path / "sae", residual)
    a, b = capture(loaded, "The capital of France is"), capture(loaded, "The capital of Italy is")
    assert a.n_tokens == b.n_tokens
    result = attribute_features(loaded, sae, a, b, answer=ANSWER, wrong=WRONG, top=sae.d_sae)
    assert result.positions == "all" and result.note is None
    assert len(result.features) == sae.d_sae
    assert result.features_sum == pytest.approx(sum(f.score for f in result.features), abs=1e-9)
    assert result.features_sum + result.error == pytest.approx(result.total, rel=1e-9, abs=1e-9)
    assert abs(result.error) > 1e-6  # a random SAE: the error row carries part of it
    sizes = [abs(f.score) for f in result.features]
    assert sizes == sorted(sizes, reverse=True)
    # the total is the first-order change of B's metric toward A's residual (central difference)
    delta = (a.residual[residual] - b.residual[residual]).float()
    t = 1e-2
    slope = (metric_after_adding(loaded, b, residual, t * delta)
             - metric_after_adding(loaded, b, residual, -t * delta)) / (2 * t)
    assert result.total == pytest.approx(slope, rel=0.05, abs=1e-3 * max(1.0, abs(slope)))


def test_prompts_of_different_lengths_attribute_the_last_position_only(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    sae = topk_sae(loaded, tmp_path / "sae", 2)
    a, b = capture(loaded, "The capital of France is"), capture(loaded, "The old capital of the country is")
    assert a.n_tokens != b.n_tokens
    result = attribute_features(loaded, sae, a, b, answer=ANSWER, wrong=WRONG, top=3)
    assert result.positions == "last" and "last position only" in result.note
    assert result.features_sum + result.error == pytest.approx(result.total, rel=1e-9, abs=1e-9)
    assert len(result.features) == 3


def test_same_metric_in_both_prompts_is_refused(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    sae = topk_sae(loaded, tmp_path / "sae", 1)
    a = capture(loaded, "The capital of France is")
    with pytest.raises(PromptError, match="same for A and B"):
        attribute_features(loaded, sae, a, a, answer=ANSWER, wrong=WRONG)


def card(contexts, promoted=(), density=0.001) -> FeatureCard:
    return FeatureCard(feature=1, density=density, contexts=tuple(contexts), promoted=tuple(promoted),
                       suppressed=())


def test_labels_name_the_words_it_fires_on_and_one_short_context():
    peru = Context(("␣In", "␣1900", "␣the", "␣capital", "␣of", "␣Peru", "␣was", "␣Lima", "."), 3, 5.0)
    caps = Context(("␣all", "␣capitals", "␣of", "␣Europe"), 1, 4.0)
    again = Context(("␣the", "␣capital", "␣city"), 1, 3.0)
    c = card([peru, caps, again], promoted=[("incoln", 3.0), ("␣Lima", 2.0), ("␣##", 1.5), ("␣Paris", 1.0)])
    assert fires_on(c) == ("␣capital", "␣capitals")
    assert example(c) == "…In 1900 the capital of Peru…"
    assert promoted_words(c) == ("␣Lima", "␣Paris")
    assert feature_label(c) == "fires on ␣capital, ␣capitals — '…In 1900 the capital of Peru…'"
    generic = card([peru], density=0.3)
    assert generic.generic and "(generic: fires on 30% of tokens)" in generic.label
    assert card([]).label == "(never active)"
    assert [is_word(t) for t in ("␣Paris", "Paris", "␣a", "␣4th", "␣")] == [True, False, False, False, False]


def test_nearest_sae_layer():
    assert nearest_sae_layer((6, 15, 24), 21) == 24
    assert nearest_sae_layer((6, 15, 24), 10) == 6  # a tie goes to the earlier layer
    assert nearest_sae_layer((6, 15, 24), 30) == 24
