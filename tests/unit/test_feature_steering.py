"""Steering with an SAE feature's decoder direction (lib.analyses.features.feature_steering_vector)
on every tiny family: α = 0 is the unsteered run, and α adds exactly α·W_dec[f] at the SAE's site."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.common.sae import load_sae, save_saelens
from lib.analyses.common.vector import load_vector
from lib.analyses.features import feature_steering_vector
from lib.analyses.steering import steer_captures, steering_interventions
from lib.core.backend import Intervention
from lib.core.capture import capture
from lib.core.errors import SettingsError
from lib.core.sites import Site, residual_sites

A, B = "The capital of France is", "The capital of Italy is"
FEATURE, D_SAE = 5, 12


@pytest.fixture
def feature_case(family_model, tmp_path):
    """A random SAE on blocks.0.hook_resid_post (= residual 1) and the captures of A and B."""
    loaded = family_model
    g = torch.Generator().manual_seed(1)
    d = loaded.d_model
    save_saelens(
        tmp_path / "sae", W_enc=torch.randn(d, D_SAE, generator=g), b_enc=torch.zeros(D_SAE),
        W_dec=torch.randn(D_SAE, d, generator=g), b_dec=torch.zeros(d), architecture="standard",
        hook_name="blocks.0.hook_resid_post", model_name=loaded.name, dtype="float32",
    )
    return loaded, load_sae(tmp_path / "sae"), capture(loaded, A), capture(loaded, B)


def kl(logits: torch.Tensor, reference: torch.Tensor) -> float:
    """KL(softmax(logits) ‖ softmax(reference)) in bits, computed here independently."""
    p, q = torch.softmax(logits.double(), -1), torch.softmax(reference.double(), -1)
    return float((p * (p.log2() - q.log2())).sum())


def test_feature_vector_is_the_decoder_row_at_the_saes_residual(feature_case):
    loaded, sae, _, _ = feature_case
    vector = feature_steering_vector(loaded, FEATURE, sae_path=sae.path)
    assert vector.layer == sae.residual == 1 and vector.mode == "feature"
    assert Site.parse(vector.site).residual == 1
    torch.testing.assert_close(vector.value, sae.W_dec[FEATURE], atol=0, rtol=0)
    again = load_vector(vector.to_bytes(), loaded, 1)  # the file the Steering page steers with
    torch.testing.assert_close(again.value, sae.W_dec[FEATURE], atol=0, rtol=0)
    assert "feature 5" in again.source
    with pytest.raises(SettingsError, match="no feature 12"):
        feature_steering_vector(loaded, D_SAE, sae_path=sae.path)


def test_alpha_zero_is_the_unsteered_run(feature_case):
    loaded, sae, cap_a, cap_b = feature_case
    file = feature_steering_vector(loaded, FEATURE, sae_path=sae.path).to_bytes()
    result = steer_captures(loaded, cap_a, cap_b, layer=1, alpha=0.0, vector_file=file,
                            settings=GenerationSettings(4))
    assert result.steered.continuation.token_ids == result.unsteered.continuation.token_ids
    assert result.steered.kl == 0.0 and result.mode == "feature"


def test_alpha_adds_alpha_times_the_decoder_row_at_the_site(feature_case):
    """The steered residual at ℓ is h_B[ℓ] + α·W_dec[f] at every position (computed here from B's
    capture), and the model run from it — written in with a 'replace' — gives the same next token
    distribution as the Steering page's run."""
    loaded, sae, cap_a, cap_b = feature_case
    vector = feature_steering_vector(loaded, FEATURE, sae_path=sae.path)
    layer = vector.layer
    alpha = 0.5 * float(cap_b.residual[layer].norm(dim=-1).mean())  # big enough to move the output
    expected = cap_b.residual[layer].float() + alpha * sae.W_dec[FEATURE]

    prompt, _ = steering_interventions(loaded.n_layers, layer, [alpha * vector.value], "prompt")
    sites = residual_sites(loaded.n_layers)
    steered = loaded.backend.run(torch.tensor([cap_b.token_ids]), sites=sites, interventions=prompt)
    scale = expected.abs().max()
    torch.testing.assert_close(steered.activations[sites[layer]][0].float(), expected, atol=1e-5 * scale,
                               rtol=1e-5)
    torch.testing.assert_close(steered.activations[sites[layer - 1]][0], cap_b.residual[layer - 1],
                               atol=0, rtol=0)  # nothing changes below ℓ

    direct = loaded.backend.run(torch.tensor([cap_b.token_ids]), interventions=[
        Intervention(sites[layer], "replace", expected[None])])
    result = steer_captures(loaded, cap_a, cap_b, layer=layer, alpha=alpha, apply="prompt",
                            vector_file=vector.to_bytes(), settings=GenerationSettings(1))
    moved = kl(direct.logits[0], cap_b.final_logits)
    assert moved > 1e-6
    assert result.steered.kl == pytest.approx(moved, rel=2e-3, abs=1e-7)
    result_down = kl(loaded.backend.run(torch.tensor([cap_b.token_ids]), interventions=[
        Intervention(sites[layer], "replace", (expected - 2 * alpha * sae.W_dec[FEATURE])[None])]).logits[0],
        cap_b.final_logits)
    assert result.negated.kl == pytest.approx(result_down, rel=2e-3, abs=1e-7)
