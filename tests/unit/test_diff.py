"""The top-token diff between A and B, checked on every tiny model family."""

from __future__ import annotations

import math

import pytest
import torch

from lib.analyses.common.lens import lens_column
from lib.analyses.diff import js_bits, kl_bits, top_token_diff
from lib.core.capture import capture
from lib.core.errors import SettingsError

A, B = "The capital of France is", "The capital of Italy is"


def lens_probs(model, cap, layer: int, position: int = -1) -> torch.Tensor:
    return torch.softmax(model.architecture.logits(cap.residual[layer, position]).double(), -1)


def test_identical_prompts_share_every_token_and_have_zero_divergence(family_model):
    cap = capture(family_model, A)
    diff = top_token_diff(family_model, cap, cap, top_k=5)
    assert len(diff.layers) == family_model.n_layers + 1
    for layer in diff.layers:
        assert layer.kl_bits == pytest.approx(0.0, abs=1e-12)
        assert layer.js_bits == pytest.approx(0.0, abs=1e-12)
        assert layer.jaccard == 1.0
        assert not layer.only_a and not layer.only_b
        assert [t.id for t in layer.shared] == [t.id for t in layer.top_a]
        assert all(t.delta_prob == 0 and t.delta_rank == 0 for t in layer.shared)
        assert layer.entropy_a_bits == layer.entropy_b_bits
        assert layer.most_changed is None


def test_kl_matches_a_direct_torch_computation(family_model):
    cap_a, cap_b = capture(family_model, A), capture(family_model, B)
    diff = top_token_diff(family_model, cap_a, cap_b, top_k=5)
    for layer in diff.layers:
        p, q = lens_probs(family_model, cap_a, layer.layer), lens_probs(family_model, cap_b, layer.layer)
        direct = torch.nn.functional.kl_div(q.log(), p, reduction="sum").item() / math.log(2)
        assert layer.kl_bits == pytest.approx(direct, rel=1e-4, abs=1e-6)
        entropy = -(p * p.log()).sum().item() / math.log(2)
        assert layer.entropy_a_bits == pytest.approx(entropy, rel=1e-4, abs=1e-6)


def test_js_is_symmetric_and_at_most_one_bit(family_model):
    cap_a, cap_b = capture(family_model, A), capture(family_model, "the quick brown fox jumps")
    ab = top_token_diff(family_model, cap_a, cap_b, top_k=5)
    ba = top_token_diff(family_model, cap_b, cap_a, top_k=5)
    for x, y in zip(ab.layers, ba.layers, strict=True):
        assert 0 <= x.js_bits <= 1
        assert x.js_bits == pytest.approx(y.js_bits, rel=1e-9, abs=1e-15)
        assert x.jaccard == y.jaccard
    assert max(layer.js_bits for layer in ab.layers) > 0


def test_js_reaches_one_bit_for_disjoint_distributions():
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.0, 0.0, 0.25, 0.75]], dtype=torch.float64)
    assert js_bits(p, q).item() == pytest.approx(1.0)
    assert kl_bits(p, q).item() == math.inf


def test_shared_and_only_tokens_carry_both_sides_probabilities(family_model):
    cap_a, cap_b = capture(family_model, A), capture(family_model, B)
    diff = top_token_diff(family_model, cap_a, cap_b, top_k=5)
    for layer in diff.layers:
        p, q = lens_probs(family_model, cap_a, layer.layer), lens_probs(family_model, cap_b, layer.layer)
        ids_a, ids_b = {t.id for t in layer.top_a}, {t.id for t in layer.top_b}
        assert {t.id for t in layer.shared} == ids_a & ids_b
        assert {t.id for t in layer.only_a} == ids_a - ids_b
        assert {t.id for t in layer.only_b} == ids_b - ids_a
        assert layer.jaccard == len(ids_a & ids_b) / len(ids_a | ids_b)
        for t in (*layer.shared, *layer.only_a, *layer.only_b):
            assert t.prob_a == pytest.approx(p[t.id].item(), abs=1e-6)
            assert t.prob_b == pytest.approx(q[t.id].item(), abs=1e-6)
            assert math.copysign(1, t.delta_prob) == math.copysign(1, t.prob_b - t.prob_a)
            assert t.rank_a == 1 + int((p > p[t.id]).sum())
        assert all(t.rank_a <= 5 and t.rank_b > 5 for t in layer.only_a)
        assert all(t.rank_b <= 5 and t.rank_a > 5 for t in layer.only_b)


def test_most_changed_token_has_the_largest_probability_change(family_model):
    cap_a, cap_b = capture(family_model, A), capture(family_model, B)
    diff = top_token_diff(family_model, cap_a, cap_b, top_k=5)
    for layer in diff.layers:
        p, q = lens_probs(family_model, cap_a, layer.layer), lens_probs(family_model, cap_b, layer.layer)
        largest = layer.most_changed.delta_prob if layer.most_changed else 0.0
        assert abs(largest) == pytest.approx((q - p).abs().max().item(), abs=1e-6)
        assert all(abs(largest) >= abs(t.delta_prob) for t in (*layer.shared, *layer.only_a, *layer.only_b))
    assert diff.layers[-1].most_changed is not None


def test_top_lists_are_the_lens_at_the_chosen_positions_of_prompts_of_different_lengths(family_model):
    cap_a, cap_b = capture(family_model, "Claire and Mary went to the shops"), capture(family_model, B)
    assert cap_a.n_tokens != cap_b.n_tokens
    diff = top_token_diff(family_model, cap_a, cap_b, position_a=2, position_b=-2, top_k=3)
    assert (diff.position_a, diff.position_b) == (2, cap_b.n_tokens - 2)
    assert diff.token_a == cap_a.tokens[2]
    column_a = lens_column(family_model, cap_a.residual, 2, 3)
    column_b = lens_column(family_model, cap_b.residual, -2, 3)
    for layer, cell_a, cell_b in zip(diff.layers, column_a, column_b, strict=True):
        assert [t.id for t in layer.top_a] == [t.id for t in cell_a.top]
        assert [t.id for t in layer.top_b] == [t.id for t in cell_b.top]


def test_position_outside_the_prompt_is_refused(tiny_models):
    model = tiny_models["gpt2"]
    cap = capture(model, A)
    with pytest.raises(SettingsError, match="outside prompt B"):
        top_token_diff(model, cap, cap, position_b=cap.n_tokens)


def test_to_dict_is_json_ready(tiny_models):
    import json

    model = tiny_models["llama"]
    diff = top_token_diff(model, capture(model, A), capture(model, B), top_k=3)
    data = json.loads(json.dumps(diff.to_dict()))
    assert data["layers"][-1]["kl_bits"] == diff.layers[-1].kl_bits
    assert data["layers"][-1]["most_changed"]["delta_prob"] == diff.layers[-1].most_changed.delta_prob
