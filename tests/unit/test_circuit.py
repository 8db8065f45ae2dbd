"""The circuit of the difference A − B (lib.analyses.circuit), on every tiny family: edge scores
sum to the attribution-patching estimates they decompose, they are the derivatives of exact path
patching, the full graph is A's run and the empty circuit B's, and EAP-IG integrates to m_A − m_B."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.circuit import edge_scores, faithfulness_runs, find_circuit, path_patch
from lib.analyses.common.metric import metric_pair
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
        rows = torch.stack([allowed, torch.zeros_like(allowed)])
        m = faithfulness_runs(model, cap_a, cap_b, metric, found, rows)
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


def test_eap_ig_with_one_step_is_eap_and_integrates_to_the_metric_gap(pair):
    """Edges out of the embedding sum to Δresidual 0 · mean gradient on the path from B's embedding
    to A's: integrated gradients, which tends to m_A − m_B as the steps grow."""
    model, cap_a, cap_b, metric = pair
    plain = edge_scores(model, cap_a, cap_b, metric, granularity="layers")
    one = edge_scores(model, cap_a, cap_b, metric, granularity="layers", ig_steps=1)
    assert torch.equal(plain.scores, one.scores)
    gap = metric.metric_a - metric.metric_b
    many = edge_scores(model, cap_a, cap_b, metric, granularity="layers", ig_steps=64)
    assert many.embed_sum == pytest.approx(gap, rel=5e-2, abs=5e-3)
    assert abs(many.embed_sum - gap) < abs(plain.embed_sum - gap) or abs(plain.embed_sum - gap) < 5e-3


def test_found_circuit_curve_runs_from_b_to_a_and_checks_its_top_edges(pair):
    model, cap_a, cap_b, _ = pair
    result = find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, granularity="layers", edges=5,
                          checked=6)
    first, last = result.curve[0], result.curve[-1]
    assert (first.size, last.size) == (0, len(result.edges))
    assert first.faithfulness == pytest.approx(0, abs=2e-3) and first.knockout == pytest.approx(1, abs=2e-3)
    assert last.faithfulness == pytest.approx(1, abs=2e-3) and last.knockout == pytest.approx(0, abs=2e-3)
    assert result.size == 5 and 5 in [p.size for p in result.curve]
    scores = [abs(e.score) for e in result.edges]
    assert scores == sorted(scores, reverse=True)
    assert [e.exact is not None for e in result.edges[:7]] == [True] * 6 + [False]
    assert result.into_logits == pytest.approx(result.whole_atp, rel=1e-4, abs=1e-5)
    names = {node.name for node in result.nodes}
    assert {e.source for e in result.edges} | {e.target for e in result.edges} <= names
    assert result.to_dict()["edges"][0]["score"] == result.edges[0].score


def test_parallel_blocks_have_one_destination_per_block(tiny_models):
    model = tiny_models["gpt_neox"]  # use_parallel_residual: attention and MLP read residual ℓ
    cap_a, cap_b = capture(model, A), capture(model, B)
    found = edge_scores(model, cap_a, cap_b, metric_pair(model, cap_a, cap_b, ANSWER, WRONG))
    assert found.graph.parallel
    assert [d.name for d in found.graph.dests] == ["block 0", "block 1", "block 2", "logits"]
    sequential = tiny_models["llama"]
    cap_a, cap_b = capture(sequential, A), capture(sequential, B)
    found = edge_scores(sequential, cap_a, cap_b, metric_pair(sequential, cap_a, cap_b, ANSWER, WRONG))
    assert [d.name for d in found.graph.dests][:2] == ["attn 0", "MLP 0"]


def test_circuit_share_keeps_the_fewest_edges_reaching_it(tiny_models):
    model = tiny_models["gpt2"]
    cap_a, cap_b = capture(model, A), capture(model, B)
    result = find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, share=0.5, checked=0)
    point = next(p for p in result.curve if p.size == result.size)
    total = sum(abs(e.score) for e in result.edges)
    below = sum(abs(e.score) for e in result.edges[: result.size - 1]) / total
    assert point.share >= 0.5 > below
    assert result.pearson_r is None


def test_circuit_refuses_what_it_cannot_do(tiny_models):
    model = tiny_models["gpt2"]
    cap_a, cap_b = capture(model, A), capture(model, "The capital of Italy is a")
    with pytest.raises(PromptError, match="same length in tokens"):
        find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    cap_b = capture(model, B)
    with pytest.raises(SettingsError, match="granularity"):
        find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, granularity="neurons")
    with pytest.raises(SettingsError, match="1 to 256 steps"):
        find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, ig_steps=0)
    with pytest.raises(SettingsError, match="share"):
        find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, share=1.5)
    gemma2 = tiny_models["gemma2"]
    cap_a, cap_b = capture(gemma2, A), capture(gemma2, B)
    with pytest.raises(ArchitectureError, match="per-layer view"):
        find_circuit(gemma2, cap_a, cap_b, answer=ANSWER, wrong=WRONG, granularity="heads")


def test_nnsight_backend_finds_the_same_circuit_with_eap_and_eap_ig(tiny_models, tiny_folders):
    from lib.core.models import load_model

    model = tiny_models["llama"]
    twin = load_model(str(tiny_folders["llama"]), backend="nnsight")
    for steps in (1, 4):
        results = []
        for loaded in (model, twin):
            cap_a, cap_b = capture(loaded, A), capture(loaded, B)
            results.append(find_circuit(loaded, cap_a, cap_b, answer=ANSWER, wrong=WRONG, edges=4, checked=3,
                                        ig_steps=steps))
        ours, theirs = results
        for mine, other in zip(ours.edges[:10], theirs.edges[:10], strict=True):
            assert (mine.source, mine.target) == (other.source, other.target)
            assert mine.score == pytest.approx(other.score, rel=1e-4, abs=1e-5)
        assert ours.faithfulness == pytest.approx(theirs.faithfulness, abs=1e-4)


def test_circuit_rows_split_into_batches_give_the_same_curve(tiny_models, monkeypatch):
    from lib.analyses import circuit

    model = tiny_models["gpt2"]
    cap_a, cap_b = capture(model, A), capture(model, B)
    whole = find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, edges=3, checked=0)
    monkeypatch.setattr(circuit, "ROW_FLOATS", 1)  # one circuit per batch
    split = find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, edges=3, checked=0)
    assert [p.size for p in split.curve] == [p.size for p in whole.curve]
    for mine, other in zip(split.curve, whole.curve, strict=True):
        assert mine.faithfulness == pytest.approx(other.faithfulness, abs=1e-5)
        assert mine.knockout == pytest.approx(other.knockout, abs=1e-5)


def test_a_family_whose_components_cannot_be_read_is_refused_plainly(tiny_models, monkeypatch):
    from dataclasses import replace

    model = tiny_models["gpt2"]
    cap_a, cap_b = capture(model, A), capture(model, B)
    arch = model.architecture
    monkeypatch.setattr(model, "architecture", replace(arch, n_heads=None))
    with pytest.raises(ArchitectureError, match="how many attention heads"):
        find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    monkeypatch.setattr(model, "architecture", replace(arch, parts=None, parts_note="its blocks are odd"))
    with pytest.raises(ArchitectureError, match="odd, so only the residual stream can be read"):
        find_circuit(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, granularity="layers")


def test_parallel_or_sequential_is_read_off_the_gradients(tmp_path, tiny_tokenizer):
    """GPT-NeoX built with sequential blocks gets an attention and an MLP destination per layer,
    and keeps the invariants: the whole graph is A, the empty circuit B."""
    from tiny import build_tiny_model

    from lib.core.models import load_model

    folder = build_tiny_model("gpt_neox", tmp_path / "neox", tokenizer=tiny_tokenizer,
                              use_parallel_residual=False)
    model = load_model(str(folder))
    cap_a, cap_b = capture(model, A), capture(model, B)
    pair = metric_pair(model, cap_a, cap_b, ANSWER, WRONG)
    found = edge_scores(model, cap_a, cap_b, pair)
    assert not found.graph.parallel
    assert [d.name for d in found.graph.dests][:2] == ["attn 0", "MLP 0"]
    allowed = found.graph.allowed
    m = faithfulness_runs(model, cap_a, cap_b, pair, found, torch.stack([allowed, torch.zeros_like(allowed)]))
    assert m.tolist() == pytest.approx([pair.metric_a, pair.metric_b], abs=2e-3)


def test_a_circuit_of_one_edge_into_the_logits_reads_b_plus_that_difference(pair):
    """The circuit {embed → logits}: the logits read B's final residual plus A's embedding minus
    B's, and nothing else of A reaches them (computed here through the lens on its own)."""
    model, cap_a, cap_b, metric = pair
    n = model.n_layers
    found = edge_scores(model, cap_a, cap_b, metric, granularity="layers")
    keep = torch.zeros_like(found.graph.allowed)
    keep[0, -1] = True
    m = faithfulness_runs(model, cap_a, cap_b, metric, found, keep[None])
    final = cap_b.residual[n, -1] + cap_a.residual[0, -1] - cap_b.residual[0, -1]
    expected = metric.metric()(model.backend.lens_logits(final[None]))
    assert float(m[0]) == pytest.approx(float(expected[0]), abs=1e-3)
