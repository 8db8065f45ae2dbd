"""The circuit of the difference A − B (lib.analyses.circuit), on every tiny family: edge scores
sum to the attribution-patching estimates they decompose, they are the derivatives of exact path
patching, the full graph is A's run and the empty circuit B's, and EAP-IG integrates to m_A − m_B."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.circuit import edge_scores, faithfulness_runs, find_circuit, path_patch
from lib.analyses.patching import metric_pair
from lib.core.capture import capture
from lib.core.errors import ArchitectureError, PromptError, SettingsError
from lib.core.sites import Site

A, B = "The capital of France is", "The capital of Italy is"
ANSWER, WRONG = 10, 11  # token ids: any two distinct tokens give a logit difference to explain


@pytest.fixture
def pair(family_model):
    model = family_model
    cap_a, cap_b = capture(model, A), capture(model, B)
    return model, cap_a, cap_b, metric_pair(model, cap_a, cap_b, ANSWER, WRONG)


def granularities(model) -> list[str]:
    """Heads where the family's heads add up to its attention output; layers everywhere."""
    parts = model.architecture.parts
    return ["layers"] if parts[0].attn_out is not parts[0].attention else ["heads", "layers"]


def test_edges_into_the_logits_sum_to_the_whole_attribution_patching_estimate(pair):
    model, cap_a, cap_b, metric = pair
    n = model.n_layers
    final = Site.residual_at(n, n)
    ids = torch.tensor([list(cap_b.token_ids)])
    at_b = model.backend.gradients(ids, [final], lambda logits: metric.metric()(logits).sum())
    delta = cap_a.residual[n].double() - at_b.run.activations[final][0].double()
    whole = float((delta * at_b.grads[final][0].double()).sum())
    for granularity in granularities(model):
        found = edge_scores(model, cap_a, cap_b, metric, granularity=granularity)
        assert found.into_logits == pytest.approx(whole, rel=1e-4, abs=1e-5)
        assert found.whole_atp == pytest.approx(whole, rel=1e-4, abs=1e-5)


def test_full_graph_is_a_and_empty_circuit_is_b(pair):
    model, cap_a, cap_b, metric = pair
    for granularity in granularities(model):
        found = edge_scores(model, cap_a, cap_b, metric, granularity=granularity)
        allowed = found.graph.allowed
        m = faithfulness_runs(model, cap_a, cap_b, metric, found, torch.stack([allowed, ~allowed & allowed]))
        gap = abs(metric.metric_a - metric.metric_b)
        assert float(m[0]) == pytest.approx(metric.metric_a, abs=2e-3 * max(1.0, gap))
        assert float(m[1]) == pytest.approx(metric.metric_b, abs=2e-3 * max(1.0, gap))


def test_edge_score_is_the_derivative_of_exact_path_patching(pair):
    """(m(+ε) − m(−ε)) / 2ε of path patching ε·(out_u^A − out_u^B) into v equals score(u → v)."""
    model, cap_a, cap_b, metric = pair
    for granularity in granularities(model):
        found = edge_scores(model, cap_a, cap_b, metric, granularity=granularity)
        s, v = torch.nonzero(found.graph.allowed, as_tuple=True)
        order = torch.argsort(found.scores[s, v].abs(), descending=True)[:4]
        edges = [(int(s[i]), int(v[i])) for i in order]
        eps = 1e-2
        up = path_patch(model, cap_b, metric, found, edges, scale=eps)
        down = path_patch(model, cap_b, metric, found, edges, scale=-eps)
        for (src, dst), hi, lo in zip(edges, up.tolist(), down.tolist(), strict=True):
            score = float(found.scores[src, dst])
            assert (hi - lo) / (2 * eps) == pytest.approx(score, rel=2e-2, abs=2e-3)
