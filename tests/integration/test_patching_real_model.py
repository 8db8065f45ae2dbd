"""Activation patching on the embedded SmolLM2: the France/Italy grid the design notes promise."""

from __future__ import annotations

import pytest

from lib.analyses.patching import Patch, patch_captures, patched_lens, patched_logits
from lib.core.capture import capture

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


@pytest.fixture(scope="module")
def france_italy(real_model):
    cap_a, cap_b = capture(real_model, FRANCE), capture(real_model, ITALY)
    return cap_a, cap_b, patch_captures(real_model, cap_a, cap_b)


def test_default_metric_is_paris_over_rome(france_italy):
    _, _, result = france_italy
    assert (result.answer.token, result.wrong.token) == ("␣Paris", "␣Rome")
    assert result.metric_a > 0 > result.metric_b


def test_effect_sits_on_the_country_at_layer_zero_and_the_last_token_at_the_top(france_italy, real_model):
    _, _, result = france_italy
    assert len(result.effect) == real_model.n_layers + 1 == 31
    assert [round(e, 3) + 0.0 for e in result.effect[0]] == [0, 0, 0, 1, 0]
    assert [round(e, 3) + 0.0 for e in result.effect[-1]] == [0, 0, 0, 0, 1]


def test_whole_layer_patch_reproduces_a_and_batched_cells_match_single_runs(france_italy, real_model):
    cap_a, cap_b, result = france_italy
    everywhere = tuple(range(cap_b.n_tokens))
    whole = patched_logits(real_model, cap_a, cap_b, [Patch(15, everywhere, everywhere)])
    assert (whole[0] - cap_a.final_logits).abs().max().item() <= 1e-3
    cells = [(0, 3), (12, 3), (12, 4), (24, 4)]
    single = patched_logits(real_model, cap_a, cap_b, [Patch(l, (p,), (p,)) for l, p in cells], rows=1)
    for (layer, position), logits in zip(cells, single, strict=True):
        metric = float(logits[result.answer.id] - logits[result.wrong.id])
        assert metric == pytest.approx(result.raw[layer][position], abs=1e-3)


def test_patched_lens_at_the_top_predicts_paris(real_model):
    column = patched_lens(real_model, FRANCE, ITALY, real_model.n_layers, 4, top_k=3)
    assert column.lens[-1][0].token == "␣Paris"
    assert column.lens[-2][0].token != "␣Paris"  # the layer below still reads B's own residual
