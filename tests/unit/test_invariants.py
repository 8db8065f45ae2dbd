"""The numbers must be faithful: invariants checked on every tiny model family."""

from __future__ import annotations

import torch

from lib.analyses.common.lens import lens_column
from lib.analyses.compare import compare_prompts
from lib.core.capture import capture


def test_lens_last_layer_matches_model_logits(family_model):
    cap = capture(family_model, "The capital of France is")
    column = lens_column(family_model, cap.residual, -1, k=10)
    own = torch.softmax(cap.final_logits, -1)
    own_top = own.topk(10)
    assert [t.id for t in column[-1].top] == own_top.indices.tolist()
    for entry, p in zip(column[-1].top, own_top.values.tolist(), strict=True):
        assert abs(entry.prob - p) <= 1e-4


def test_lens_last_layer_matches_full_distribution(family_model):
    cap = capture(family_model, "Claire and Mary went to the shops")
    lens = torch.softmax(family_model.architecture.logits(cap.residual[-1, -1]), -1)
    own = torch.softmax(cap.final_logits, -1)
    assert (lens - own).abs().max().item() <= 1e-4


def test_identical_prompts_have_zero_distance_everywhere(family_model):
    c = compare_prompts(family_model, "The capital of Italy is", "The capital of Italy is")
    assert max(c.distance.cosine) == 0.0
    assert max(c.distance.relative_l2) == 0.0


def test_same_last_token_same_position_has_zero_distance_at_layer_zero(family_model):
    c = compare_prompts(family_model, "You have happy emotion in yourself!",
                        "You have angry emotion in yourself!")
    assert len(c.a.token_ids) == len(c.b.token_ids)
    assert c.distance.cosine[0] < 1e-12
    assert c.distance.relative_l2[0] < 1e-12
    assert max(c.distance.cosine[1:]) > 0  # the differing word reaches the last position


def test_residual_has_one_entry_per_layer_boundary(family_model):
    cap = capture(family_model, "the quick brown fox")
    assert cap.residual.shape == (family_model.n_layers + 1, cap.n_tokens, family_model.d_model)


def test_hooks_are_removed_after_capture(family_model):
    capture(family_model, "the lazy dog")
    for block in family_model.architecture.blocks:
        assert not block._forward_pre_hooks and not block._forward_hooks


def test_distances_equal_those_of_the_models_own_hidden_states(family_model):
    """The Compare page's distance per layer, recomputed from transformers' own hidden states."""
    import copy

    a, b = "The capital of France is", "Claire and Mary went to the shops"
    c = compare_prompts(family_model, a, b)
    model = copy.deepcopy(family_model.model)  # output_hidden_states leaves hooks behind in transformers 5
    with torch.no_grad():
        hs_a, hs_b = (
            model(torch.tensor([ids]), output_hidden_states=True).hidden_states
            for ids in (c.a.token_ids, c.b.token_ids)
        )
    for layer in range(family_model.n_layers):  # hidden_states[L] is after the final norm: not a residual
        x, y = hs_a[layer][0, -1].double(), hs_b[layer][0, -1].double()
        cosine = 1 - torch.nn.functional.cosine_similarity(x, y, dim=0).item()
        rel = (torch.linalg.norm(x - y) / ((torch.linalg.norm(x) + torch.linalg.norm(y)) / 2)).item()
        assert abs(c.distance.cosine[layer] - cosine) < 1e-6
        assert abs(c.distance.relative_l2[layer] - rel) < 1e-6
