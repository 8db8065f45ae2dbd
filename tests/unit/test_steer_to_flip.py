"""Steer-to-flip (DESIGN.md) and the push limit: the smallest α per layer at which B's steered
top-1 is A's answer, checked against single unbatched runs; the sweep's best cell; KL in bits."""

from __future__ import annotations

import math

import pytest
import torch

from lib.analyses.generation import GenerationSettings
from lib.analyses.steering import (
    MAX_PUSH,
    check_push,
    residual_norm,
    steer_captures,
    steer_to_flip,
    steering_interventions,
    steering_sweep,
    steering_vector,
)
from lib.core.capture import capture
from lib.core.errors import PromptError, SettingsError

WORDS = ("Paris", "Rome", "milk", "happy", "angry", "fox", "dog", "shops", "Claire", "Mary", "Boston", "team")
PROMPTS = [f"The {w} is" for w in WORDS] + [f"{w} {v}" for w in WORDS[:6] for v in WORDS[6:]]


def differing_pair(loaded):
    """The first two prompts of equal length whose top-1 next tokens differ in this model (tiny
    models often predict the same token after different prompts)."""
    caps = [capture(loaded, text) for text in PROMPTS]
    for i, cap_a in enumerate(caps):
        for cap_b in caps[i + 1:]:
            if cap_a.n_tokens == cap_b.n_tokens and int(cap_a.final_logits.argmax()) != int(
                    cap_b.final_logits.argmax()):
                return cap_a, cap_b
    raise AssertionError(f"no two prompts have different top-1 tokens in {loaded.name}")


def top1_after(loaded, cap_b, layer: int, value: torch.Tensor) -> int:
    """B's next-token top-1 with `value` added at residual `layer`: one row, its own pass."""
    prompt, _ = steering_interventions(loaded.n_layers, layer, [value], "prompt")
    return int(loaded.backend.run(torch.tensor([cap_b.token_ids]), interventions=prompt).logits[0].argmax())


def test_aligned_difference_flips_every_layer_by_alpha_one(family_model):
    """α = 1 with the aligned vector makes B A from ℓ on (tested in test_steering), so every layer
    flips at some α ≤ 1; each reported α flips B in a run of its own, and the α below it does not."""
    loaded = family_model
    cap_a, cap_b = differing_pair(loaded)
    search = steer_to_flip(loaded, cap_a, cap_b, mode="aligned", bisections=4)
    answer = int(cap_a.final_logits.argmax())
    assert search.answer.id == answer and len(search.layers) == loaded.n_layers + 1
    for flip in search.layers:
        assert flip.alpha is not None and 0 < flip.alpha <= 1.0, flip
        v = steering_vector(loaded, cap_a, cap_b, flip.layer, "aligned").value
        assert top1_after(loaded, cap_b, flip.layer, flip.alpha * v) == answer
        if flip.below > 0:
            assert top1_after(loaded, cap_b, flip.layer, flip.below * v) != answer
        norm = float(v.norm(dim=-1).mean())
        assert flip.push == pytest.approx(flip.alpha * norm / residual_norm(cap_b, flip.layer), rel=1e-5)
    best = search.best
    assert best.push == min(f.push for f in search.layers)
    assert f"layer {best.layer}" in search.reading() and f"α = {best.alpha:g}" in search.reading()


def test_a_pair_with_the_same_answer_has_nothing_to_flip(tiny_models):
    loaded = tiny_models["gpt2"]
    cap = capture(loaded, "The capital of France is")
    with pytest.raises(PromptError, match="nothing to flip"):
        steer_to_flip(loaded, cap, cap)


def test_no_flip_is_said_plainly(tiny_models):
    loaded = tiny_models["llama"]
    cap_a, cap_b = differing_pair(loaded)
    search = steer_to_flip(loaded, cap_a, cap_b, layers=[0], grid=(0.0,))
    assert search.best is None and search.layers[0].alpha is None
    assert "does not flip" in search.reading()


def test_a_push_far_beyond_the_residual_is_refused(tiny_models):
    loaded = tiny_models["llama"]
    cap_a, cap_b = differing_pair(loaded)
    layer = 1
    norm = steering_vector(loaded, cap_a, cap_b, layer).norm
    limit = MAX_PUSH * residual_norm(cap_b, layer) / norm
    assert check_push(limit * 0.99, norm, cap_b, layer) < MAX_PUSH
    with pytest.raises(SettingsError, match=r"times as long as the residual .* use \|α\| ≤"):
        steer_captures(loaded, cap_a, cap_b, layer=layer, alpha=1e9, settings=GenerationSettings(1))
    with pytest.raises(SettingsError, match="times as long as the residual"):
        steering_sweep(loaded, cap_a, cap_b, alphas=(1.0, 1e9))


def test_steering_kl_is_in_bits(tiny_models):
    loaded = tiny_models["llama"]
    cap_a, cap_b = differing_pair(loaded)
    result = steer_captures(loaded, cap_a, cap_b, layer=1, alpha=2.0, apply="prompt",
                            settings=GenerationSettings(1))
    v = steering_vector(loaded, cap_a, cap_b, 1).value
    prompt, _ = steering_interventions(loaded.n_layers, 1, [2.0 * v], "prompt")
    steered = loaded.backend.run(torch.tensor([cap_b.token_ids]), interventions=prompt).logits[0].double()
    p, q = torch.softmax(steered, -1), torch.softmax(cap_b.final_logits.double(), -1)
    bits = float((p * (p.log() - q.log())).sum()) / math.log(2)
    assert result.steered.kl == pytest.approx(bits, rel=2e-3, abs=1e-7)
    assert result.to_dict()["effects"]["kl_unit"] == "bits"
    assert result.push == pytest.approx(2.0 * float(v.norm()) / residual_norm(cap_b, 1), rel=1e-5)


def test_sweep_best_is_the_smallest_push_that_reaches_a(family_model):
    loaded = family_model
    cap_a, cap_b = differing_pair(loaded)
    sweep = steering_sweep(loaded, cap_a, cap_b, alphas=(0.5, 1.0, 2.0, 4.0), mode="aligned")
    layer, alpha = sweep.best()
    j = sweep.alphas.index(alpha)
    reached = [(l, i) for l in range(len(sweep.kl)) for i in range(len(sweep.alphas)) if sweep.reaches(l, i)]
    assert reached  # aligned α = 1 reproduces A at every layer
    assert sweep.reaches(layer, j)
    assert sweep.push(layer, j) == min(sweep.push(l, i) for l, i in reached)
    assert ("overshoot" in sweep.reading()) == sweep.overshoot(layer, j)
    assert sweep.to_dict()["best"] == {"layer": layer, "alpha": alpha, "overshoot": sweep.overshoot(layer, j)}
