"""Components on the embedded SmolLM2 (30 layers, 9 heads): the France/Italy pair.

What the embedded model shows (measured, and asserted below): the parts sum to the model's own
logit difference; the head writing most of ␣Paris over ␣Rome directly is layer 23 head 4 (A − B ≈ +4.6
of the ≈ 13.3 difference), and patching that one head's output from A into B moves B ≈ 0.93 of the
way to A; attribution patching agrees with exact head patching with Pearson r ≈ 0.998.
"""

from __future__ import annotations

import pytest

from lib.analyses.components import attention_patterns, attribute_captures, patch_components, top_components
from lib.core.capture import capture

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


@pytest.fixture(scope="module")
def captures(real_model):
    return capture(real_model, FRANCE), capture(real_model, ITALY)


@pytest.fixture(scope="module")
def attribution(real_model, captures):
    return attribute_captures(real_model, *captures)


def test_parts_sum_to_the_models_own_logit_difference(attribution, captures):
    assert (attribution.answer.token, attribution.wrong.token) == ("␣Paris", "␣Rome")
    for att, cap in ((attribution.a, captures[0]), (attribution.b, captures[1])):
        own = float(cap.final_logits[attribution.answer.id] - cap.final_logits[attribution.wrong.id])
        assert att.logit_diff == pytest.approx(own, abs=1e-4)
        assert att.parts_sum == pytest.approx(att.linearized_logit_diff, abs=1e-3)
        assert att.linearized_logit_diff == pytest.approx(own, abs=1e-3)  # SmolLM2: RMSNorm, no cap
        for layer, heads in enumerate(att.heads):
            assert sum(heads) == pytest.approx(att.attn[layer], abs=1e-3)
    assert attribution.a.logit_diff > 0 > attribution.b.logit_diff


def test_the_top_direct_head_is_layer_23_head_4(attribution):
    name, delta = top_components(attribution, 1)[0]
    assert name == "L23 H4" and delta > 3


def test_exact_head_patching_and_attribution_patching_agree_on_the_top_head(real_model, captures):
    result = patch_components(real_model, *captures)
    cells = [(l, h, cell[0]) for l, row in enumerate(result.heads) for h, cell in enumerate(row)]
    layer, head, effect = max(cells, key=lambda cell: abs(cell[2]))
    assert (layer, head) == (23, 4) and effect > 0.8
    assert result.agreement.pearson_r > 0.95
    assert result.atp_heads[23][4][0] == pytest.approx(effect, abs=0.2)


def test_real_attention_patterns_rows_sum_to_one(real_model, captures):
    patterns = attention_patterns(real_model, *captures)
    assert patterns.n_heads == 9 and patterns.a.shape[0] == 30
    for weights in (patterns.a, patterns.b):
        assert (weights.sum(-1) - 1).abs().max() < 1e-4
