"""Which components make the difference (lib.analyses.components), on every tiny family:
direct logit attribution sums exactly, attention patterns are the model's own, component patching
is exact where it must be, and the backend's gradients are the true derivatives."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.components import (
    activations_of,
    attention_patterns,
    attribute_captures,
    patch_components,
    patched_metric,
    readout,
)
from lib.core.backend import Intervention, Transplant
from lib.core.capture import capture
from lib.core.errors import PromptError, SettingsError
from lib.core.sites import Site

A, B = "The capital of France is", "The capital of Italy is"
ANSWER, WRONG = 10, 11  # token ids: any two distinct tokens give a logit difference to explain


@pytest.fixture
def pair(family_model):
    return family_model, capture(family_model, A), capture(family_model, B)


def pre_cap_logit_diff(model, cap) -> float:
    """logit[answer] − logit[wrong] from the model's own final norm and unembedding, before any soft-cap."""
    arch = model.architecture
    with torch.inference_mode():
        h = arch.final_norm(cap.residual[-1, -1:]) if arch.final_norm is not None else cap.residual[-1, -1:]
        if arch.project_out is not None:
            h = arch.project_out(h)
        logits = arch.unembed(h)[0].double()
    return float(logits[ANSWER] - logits[WRONG])


def test_dla_parts_sum_to_the_linearized_logit_difference(pair):
    model, cap_a, cap_b = pair
    result = attribute_captures(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    for att, cap in ((result.a, cap_a), (result.b, cap_b)):
        assert len(att.attn) == len(att.mlp) == len(att.heads) == model.n_layers
        assert all(len(row) == model.architecture.n_heads for row in att.heads)
        assert att.parts_sum == pytest.approx(att.linearized_logit_diff, abs=1e-4)
        assert att.linearized_logit_diff == pytest.approx(pre_cap_logit_diff(model, cap), abs=1e-4)
        for layer in range(model.n_layers):  # a layer's attention is the sum of its heads
            assert sum(att.heads[layer]) == pytest.approx(att.attn[layer], abs=1e-5)


def test_dla_equals_the_models_own_logit_difference_unless_the_logits_are_capped(pair):
    model, cap_a, cap_b = pair
    result = attribute_captures(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    for att, cap in ((result.a, cap_a), (result.b, cap_b)):
        own = float(cap.final_logits[ANSWER] - cap.final_logits[WRONG])
        assert att.logit_diff == pytest.approx(own, abs=1e-5)
        if model.architecture.logit_softcap is None:
            assert att.linearized_logit_diff == pytest.approx(own, abs=1e-4)
        else:  # Gemma-2: cap · tanh(l / cap) shrinks the difference the parts explain
            assert abs(att.linearized_logit_diff) > abs(own)
            assert "caps its logits" in result.note


def test_each_heads_dla_is_its_slice_of_the_output_projection(pair):
    """Independent of the weight slicing: run the projection module itself on z with only head h
    kept, and read that output through the frozen readout direction w."""
    model, cap_a, cap_b = pair
    arch, n = model.architecture, model.n_layers
    result = attribute_captures(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    w, _ = readout(model, cap_a.residual[-1, -1], ANSWER, WRONG)
    for layer in range(n):
        parts = arch.block_parts(layer)
        z = activations_of(model, cap_a.token_ids, [Site(layer, "z")])[Site(layer, "z")][-1]  # [heads, dh]
        with torch.inference_mode():
            full = parts.out_proj(z.flatten()[None])[0].double()
            y0 = parts.out_proj(torch.zeros_like(z).flatten()[None])[0].double()
            outs = []
            for h in range(z.shape[0]):
                kept = torch.zeros_like(z)
                kept[h] = z[h]
                outs.append(parts.out_proj(kept.flatten()[None])[0].double() - y0)
            if parts.attn_out is not parts.attention:  # Gemma-2: post-norm scale frozen at the real output
                frozen = parts.attn_out(full[None].to(z.dtype))[0].double() / full
                outs = [o * frozen for o in outs]  # RMSNorm: elementwise γ/s, the same for every head
        expected = [float(o @ w) for o in outs]
        assert list(result.a.heads[layer]) == pytest.approx(expected, abs=1e-4)


def test_dla_takes_one_forward_pass_per_prompt(pair):
    model, cap_a, cap_b = pair
    before = model.forward_passes
    attribute_captures(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    assert model.forward_passes - before == 2


def test_attention_rows_sum_to_one_and_equal_eager_attention_weights(pair):
    model, cap_a, cap_b = pair
    implementation = model.model.config._attn_implementation
    before = model.forward_passes
    patterns = attention_patterns(model, cap_a, cap_b)
    assert model.forward_passes - before == 2  # every layer from one eager pass per prompt
    assert model.model.config._attn_implementation == implementation  # restored after the pass
    a = patterns.a
    assert a.shape == (model.n_layers, model.architecture.n_heads, cap_a.n_tokens, cap_a.n_tokens)
    torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:3]), rtol=0, atol=1e-5)
    assert torch.all(a.triu(1) == 0)  # causal: no query looks ahead
    # the reference: transformers' own eager attention weights, from a separate copy of the model
    # (output_attentions leaves transformers' output-capturing hooks on the modules it ran)
    from transformers import AutoModelForCausalLM

    reference = AutoModelForCausalLM.from_pretrained(model.spec, attn_implementation="eager").eval()
    with torch.inference_mode():
        out = reference(input_ids=torch.tensor([cap_b.token_ids]), output_attentions=True, use_cache=False)
    for layer in range(model.n_layers):
        torch.testing.assert_close(patterns.b[layer], out.attentions[layer][0].float(), rtol=0, atol=1e-6)
    mean = torch.tensor(patterns.view("b", 1))
    torch.testing.assert_close(mean, patterns.b[1].mean(0))


def test_patterns_too_large_to_keep_are_refused_naming_the_limit(tiny_models, monkeypatch):
    import lib.analyses.components as components

    model = tiny_models["gpt2"]
    cap = capture(model, A)
    monkeypatch.setattr(components, "PATTERN_FLOATS", model.n_layers * 4 * 3 * 3)
    with pytest.raises(SettingsError, match=f"Prompt A has {cap.n_tokens} tokens.*at most 3 tokens"):
        attention_patterns(model, cap, cap)


def test_a_model_that_cannot_switch_to_eager_attention_is_refused_plainly(tiny_models, monkeypatch):
    model = tiny_models["llama"]
    monkeypatch.setattr(model.model.config, "_attn_implementation", "sdpa")
    monkeypatch.setattr(type(model.model), "_can_set_attn_implementation", lambda self: False)
    cap = capture(model, A)
    with pytest.raises(SettingsError, match="cannot be switched to eager attention"):
        attention_patterns(model, cap, cap)
    with pytest.raises(SettingsError, match="returns no weights"):  # without the option, the hook says why
        model.backend.run(torch.tensor([cap.token_ids]), sites=[Site(0, "pattern")])


def metric_of(logits: torch.Tensor) -> list[float]:
    return (logits[:, ANSWER].double() - logits[:, WRONG].double()).tolist()


def metric(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, ANSWER].double() - logits[:, WRONG].double()


def test_patching_the_embedding_and_every_component_up_to_a_layer_equals_patching_the_next_residual(pair):
    """x_{ℓ+1} = embed + Σ_{ℓ' ≤ ℓ} (attn_ℓ' + mlp_ℓ'): writing all of A's parts into B at every
    position writes A's residual ℓ+1, sequential and parallel blocks alike; both give A's metric."""
    model, cap_a, cap_b = pair
    n = model.n_layers
    every = tuple(range(cap_b.n_tokens))
    sites = [Site.residual_at(r, n) for r in range(n + 1)]
    sites += [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "mlp_out")]
    acts_a = activations_of(model, cap_a.token_ids, sites)
    rows = []
    for layer in range(n):
        parts = [Transplant(Site.residual_at(0, n), every, every)]
        kinds = ("attn_out", "mlp_out")
        parts += [Transplant(Site(l, kind), every, every) for l in range(layer + 1) for kind in kinds]
        rows += [parts, [Transplant(Site.residual_at(layer + 1, n), every, every)]]
    got = patched_metric(model, acts_a, cap_b, rows, metric)
    own_a = metric_of(cap_a.final_logits[None])[0]
    for layer in range(n):
        assert got[2 * layer] == pytest.approx(got[2 * layer + 1], abs=1e-4)
        assert got[2 * layer] == pytest.approx(own_a, abs=1e-4)


def test_patching_every_head_of_a_layer_equals_patching_its_attention_output(pair):
    model, cap_a, cap_b = pair
    n, heads = model.n_layers, model.architecture.n_heads
    every = tuple(range(cap_b.n_tokens))
    sites = [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "z")]
    acts_a = activations_of(model, cap_a.token_ids, sites)
    rows = []
    for layer in range(n):
        rows.append([Transplant(Site(layer, "z"), every, every, head=h) for h in range(heads)])
        rows.append([Transplant(Site(layer, "attn_out"), every, every)])
    got = patched_metric(model, acts_a, cap_b, rows, metric)
    for layer in range(n):
        assert got[2 * layer] == pytest.approx(got[2 * layer + 1], abs=1e-4)


def test_batched_component_grid_equals_one_run_per_cell_and_reads_effects(pair):
    model, cap_a, cap_b = pair
    batched = patch_components(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG)
    single = patch_components(model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, rows=1)
    n, heads = model.n_layers, model.architecture.n_heads
    assert batched.columns == ("all",)
    assert len(batched.heads) == n and all(len(row) == heads for row in batched.heads)
    torch.testing.assert_close(torch.tensor(batched.heads), torch.tensor(single.heads), rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(batched.components), torch.tensor(single.components), rtol=0,
                               atol=1e-4)
    # a lone component is one run of B patched there: recompute one cell directly
    every = tuple(range(cap_b.n_tokens))
    acts_a = activations_of(model, cap_a.token_ids, [Site(n - 1, "mlp_out")])
    cell = Transplant(Site(n - 1, "mlp_out"), every, every)
    [patched] = patched_metric(model, acts_a, cap_b, [[cell]], metric, skip=False)
    m_b = metric_of(cap_b.final_logits[None])[0]
    expected = (patched - m_b) / (batched.metric_a - m_b)
    assert batched.components[n - 1][1][0] == pytest.approx(expected, abs=1e-4)
    assert batched.agreement.pearson_r is None or -1 - 1e-9 <= batched.agreement.pearson_r <= 1 + 1e-9


def test_per_position_grid_sums_nothing_away_and_needs_equal_lengths(family_model):
    cap_a, cap_b = capture(family_model, A), capture(family_model, B)
    result = patch_components(family_model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, per_position=True)
    assert result.columns == tuple(str(p) for p in range(cap_b.n_tokens))
    assert all(len(cell) == cap_b.n_tokens for row in result.heads for cell in row)
    longer = capture(family_model, A + " the")
    with pytest.raises(PromptError, match="same length in tokens"):
        patch_components(family_model, longer, cap_b, answer=ANSWER, wrong=WRONG, per_position=True)
    unequal = patch_components(family_model, longer, cap_b, answer=ANSWER, wrong=WRONG)
    assert unequal.columns == ("last",) and "do not line up" in unequal.note


@pytest.mark.parametrize("kind", ["z", "attn_out", "mlp_out", "resid_pre"])
def test_gradients_are_the_derivative_of_the_metric(family_model, kind):
    """∂m/∂a from one backward pass, against a central finite difference along a random direction."""
    model = family_model
    ids = torch.tensor([capture(model, A).token_ids])
    site = Site(1, kind)

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, ANSWER] - logits[:, WRONG]).sum()

    before = model.forward_passes
    found = model.backend.gradients(ids, [site], metric)
    assert model.forward_passes - before == 1
    assert all(p.grad is None for p in model.model.parameters())
    grad = found.grads[site][0].double()
    direction = torch.randn(grad.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    flat = direction.flatten(-2) if kind == "z" else direction
    eps = 1e-2

    def shifted(sign: float) -> float:
        run = model.backend.run(ids, interventions=[Intervention(site, "add", (sign * eps * flat).float())])
        return float(metric(run.logits.double()))

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    assert float((grad * direction).sum()) == pytest.approx(numeric, rel=2e-2, abs=2e-3)
    plain = model.backend.run(ids, sites=[site])
    torch.testing.assert_close(found.run.activations[site], plain.activations[site])


def test_skipping_the_blocks_below_a_patch_gives_the_same_numbers(pair):
    """Rows patched at block ℓ start from B's own residual ℓ: the grid equals recomputing every block."""
    model, cap_a, cap_b = pair
    n, heads = model.n_layers, model.architecture.n_heads
    every = tuple(range(cap_b.n_tokens))
    sites = [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "mlp_out", "z")]
    acts_a = activations_of(model, cap_a.token_ids, sites)
    rows = [[Transplant(Site(l, "z"), every, every, head=h)] for l in reversed(range(n))
            for h in range(heads)]
    rows += [[Transplant(Site(layer, "mlp_out"), (p,), (p,))] for layer in range(n) for p in every]
    skipped = patched_metric(model, acts_a, cap_b, rows, metric, step=5)
    full = patched_metric(model, acts_a, cap_b, rows, metric, step=5, skip=False)
    assert skipped == pytest.approx(full, abs=1e-4)


def test_a_run_from_the_middle_equals_the_whole_run(family_model):
    model = family_model
    n = model.n_layers
    cap = capture(model, A)
    ids = torch.tensor([cap.token_ids] * 2)
    entry = Intervention(Site.residual_at(2, n), "replace", cap.residual[2][None])
    late = Site(2, "mlp_out")
    whole = model.backend.run(ids, sites=[late, Site.residual_at(n, n)])
    resumed = model.backend.run(ids, sites=[late, Site.residual_at(n, n)], interventions=[entry], start_at=2)
    torch.testing.assert_close(resumed.logits, whole.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(resumed.activations[late], whole.activations[late], rtol=1e-5, atol=1e-5)
    after = model.backend.run(ids)  # the skipped blocks work again afterwards
    torch.testing.assert_close(after.logits, whole.logits, rtol=0, atol=0)


@pytest.mark.parametrize(
    "start, kwargs, phrase",
    [
        (2, {}, "needs the whole of blocks.2.hook_resid_pre replaced"),
        (2, {"sites": [Site(1, "mlp_out")]}, "below block 2"),
        (0, {}, None),
        (99, {}, "can start at blocks 1 to"),
    ],
)
def test_a_run_from_the_middle_refuses_what_it_cannot_do(tiny_models, start, kwargs, phrase):
    model = tiny_models["llama"]
    cap = capture(model, A)
    ids = torch.tensor([cap.token_ids])
    if kwargs:  # with the residual written, reading below the start is what is refused
        kwargs["interventions"] = [Intervention(Site(2, "resid_pre"), "replace", cap.residual[2][None])]
    if phrase is None:
        model.backend.run(ids, start_at=start, **kwargs)
        return
    with pytest.raises(SettingsError, match=phrase):
        model.backend.run(ids, start_at=start, **kwargs)


def test_per_position_cells_that_write_b_own_values_need_no_pass(family_model, monkeypatch):
    """Before the first token where A and B differ, A's components are B's own, bit for bit: those
    cells of the per-position grid are B's run (no patched row) and the grid is the one computed
    with every cell run from block 0."""
    from lib.analyses.common import rows as patching

    cap_a, cap_b = capture(family_model, A), capture(family_model, B)
    first = next(p for p, (a, b) in enumerate(zip(cap_a.token_ids, cap_b.token_ids, strict=True)) if a != b)
    assert first >= 1  # "The capital of" is shared
    run_rows = []
    patched_rows = patching.patched_rows

    def counted(loaded, cap, depths, *args, **kwargs):
        run_rows.append(len(depths))
        return patched_rows(loaded, cap, depths, *args, **kwargs)

    monkeypatch.setattr(patching, "patched_rows", counted)  # rows_or_own runs the rows not skipped
    fast = patch_components(family_model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, per_position=True)
    n, heads = family_model.n_layers, family_model.architecture.n_heads
    cells = (2 + heads) * n
    sites = [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "mlp_out", "z")]
    own_a, own_b = (activations_of(family_model, c.token_ids, sites) for c in (cap_a, cap_b))
    def cell(acts: dict, site: Site, p: int, h: int) -> torch.Tensor:
        return acts[site][p][h] if site.kind == "z" else acts[site][p]

    # the cells whose value in A is B's bit for bit: the shared prefix, and any later one that
    # depends on its own token only (e.g. a parallel MLP at layer 0)
    same = sum(
        torch.equal(cell(own_a, site, p, h), cell(own_b, site, p, h))
        for site in sites for p in range(cap_b.n_tokens) for h in (range(heads) if site.kind == "z" else [0])
    )
    assert same >= cells * first and sum(run_rows) == cells * cap_b.n_tokens - same
    run_rows.clear()
    full = patch_components(family_model, cap_a, cap_b, answer=ANSWER, wrong=WRONG, per_position=True,
                            resume=False)
    assert sum(run_rows) == cells * cap_b.n_tokens
    torch.testing.assert_close(torch.tensor(fast.heads), torch.tensor(full.heads), rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.tensor(fast.components), torch.tensor(full.components), rtol=0,
                               atol=1e-4)
    own = [cell[p] for row in fast.heads for cell in row for p in range(first)]
    assert own and all(v == pytest.approx(0.0, abs=1e-9) for v in own)  # B's own run: effect 0
