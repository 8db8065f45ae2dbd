"""Circuits on the embedded SmolLM2 (30 layers, 9 heads): France/Italy and the IOI pair.

What the embedded model shows (measured, and asserted loosely below: the numbers are what they
are). France/Italy, ␣Paris vs ␣Rome, 9,331 edges: the 50 top edges alone restore ≈ 0.41 of
m_A − m_B and knocking them out leaves ≈ 0; the top edges include embed → MLP 0, MLP 0 → attn 23
and L23 H4 → logits (the head the Components page finds writing ␣Paris); the top 20 edges' scores
agree with exact path patching at Pearson r ≈ 0.97. IOI (␣Mary vs ␣John): faithfulness ≈ 0.39 at
50 edges, r ≈ 0.73 (embed → MLP 0 is estimated at 2.3 where patching it gives 11.6: attribution
patching's known weak spot, which EAP-IG is there for).
"""

from __future__ import annotations

import pytest

from lib.analyses.circuit import find_circuit
from lib.core.capture import capture

PAIRS = {
    "france": ("The capital of France is", "The capital of Italy is", " Paris", " Rome"),
    "ioi": ("When Mary and John went to the store, John gave a drink to",
            "When Mary and John went to the store, Mary gave a drink to", " Mary", " John"),
}


@pytest.fixture(scope="module", params=sorted(PAIRS))
def circuit(request, real_model):
    a, b, answer, wrong = PAIRS[request.param]
    return request.param, find_circuit(real_model, capture(real_model, a), capture(real_model, b),
                                       answer=answer, wrong=wrong, edges=50)


def test_curve_runs_from_b_to_a_and_the_circuit_is_measured(circuit):
    _, result = circuit
    assert len(result.edges) == 9331  # 1 + 30·9 + 30 sources, 61 destinations, in order
    first, last = result.curve[0], result.curve[-1]
    assert first.faithfulness == pytest.approx(0, abs=1e-3)
    assert last.faithfulness == pytest.approx(1, abs=1e-3)
    assert 0.2 < result.faithfulness < 0.8  # about 0.4 for both pairs
    assert abs(result.knockout) < 0.1
    assert result.into_logits == pytest.approx(result.whole_atp, rel=1e-5)


def test_top_edges_agree_with_exact_path_patching(circuit):
    name, result = circuit
    assert result.pearson_r > (0.9 if name == "france" else 0.5)
    top = {(e.source, e.target) for e in result.edges[:10]}
    if name == "france":
        assert {("MLP 0", "attn 23"), ("L23 H4", "logits")} <= top
    else:
        assert ("L23 H3", "logits") in top
