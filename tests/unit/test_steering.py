"""Steering with h_A − h_B (lib.analyses.steering): invariants on every tiny family, the sweep,
vector files."""

from __future__ import annotations

import re

import pytest
import torch

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.common.vector import load_vector
from lib.analyses.generation import continue_capture
from lib.analyses.steering import (
    next_token_logits,
    steer_captures,
    steer_with_answer,
    steering_interventions,
    steering_sweep,
    steering_vector,
)
from lib.core.capture import capture
from lib.core.errors import PromptError, SettingsError
from lib.core.sites import residual_sites

A, B = "The capital of France is", "The capital of Italy is"
SETTINGS = GenerationSettings(6)


@pytest.fixture
def pair(family_model):
    cap_a, cap_b = capture(family_model, A), capture(family_model, B)
    assert cap_a.n_tokens == cap_b.n_tokens
    return family_model, cap_a, cap_b


def test_alpha_zero_is_the_unsteered_run(pair):
    """α = 0 adds exact zeros: the steered row is the unsteered run, token for token and logit for logit."""
    loaded, cap_a, cap_b = pair
    result = steer_captures(loaded, cap_a, cap_b, layer=1, alpha=0.0, settings=SETTINGS)
    plain = continue_capture(loaded, cap_b, SETTINGS)
    for outcome in (result.steered, result.negated, result.random):  # α = 0 scales the control to 0 too
        assert outcome.continuation.token_ids == result.unsteered.continuation.token_ids
        assert outcome.kl == 0.0 and outcome.logit_diff == result.unsteered.logit_diff
    assert result.unsteered.continuation.token_ids == plain.token_ids
    assert result.unsteered.logit_diff == pytest.approx(result.metric_b, abs=1e-4)


def test_answer_row_of_the_steered_batch_is_each_prompts_own_continuation(pair):
    """steer_with_answer: A's unsteered fifth row writes A's own continuation, row 0 B's, and the
    steered rows what steer_captures writes; the numbers agree to batch rounding."""
    loaded, cap_a, cap_b = pair
    how = {"layer": loaded.n_layers // 2, "alpha": 2.0, "settings": SETTINGS}
    both = steer_with_answer(loaded, cap_a, cap_b, **how)
    alone = steer_captures(loaded, cap_a, cap_b, **how)
    own_a, own_b = continue_capture(loaded, cap_a, SETTINGS), continue_capture(loaded, cap_b, SETTINGS)
    assert both.answer_a == own_a and both.steer.unsteered.continuation == own_b
    assert both.to_dict()["answer_a"] == own_a.to_dict()
    for mine, theirs in zip(both.steer.outcomes, alone.outcomes, strict=True):
        assert mine.continuation == theirs.continuation
        assert mine.kl == pytest.approx(theirs.kl, abs=1e-4) and mine.side_kl == theirs.side_kl
        if theirs.logit_diff is not None:
            assert mine.logit_diff == pytest.approx(theirs.logit_diff, abs=1e-4)
    longer = capture(loaded, A + " very")
    assert steer_with_answer(loaded, longer, cap_b, **how).answer_a is None  # rows must be equal


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_aligned_difference_turns_b_into_a(pair, where):
    """h_A − h_B added position by position at layer ℓ to B (α = 1) gives A's residual stream from ℓ
    on, at every position, and A's next-token distribution."""
    loaded, cap_a, cap_b = pair
    layer = {"first": 0, "middle": loaded.n_layers // 2, "last": loaded.n_layers}[where]
    vector = steering_vector(loaded, cap_a, cap_b, layer, "aligned")
    prompt, steps = steering_interventions(loaded.n_layers, layer, [vector.value], "all")
    assert steps == []  # aligned vectors have no position for generated tokens
    sites = residual_sites(loaded.n_layers)
    run = loaded.backend.run(torch.tensor([cap_b.token_ids]), sites=sites, interventions=prompt)
    steered = torch.stack([run.activations[s][0] for s in sites])
    scale = cap_a.residual.abs().max()
    torch.testing.assert_close(steered[layer:], cap_a.residual[layer:], atol=1e-4 * scale, rtol=1e-4)
    if layer > 0:  # below ℓ nothing changed
        torch.testing.assert_close(steered[:layer], cap_b.residual[:layer], atol=0, rtol=0)
    p_a, p_s = torch.softmax(cap_a.final_logits, -1), torch.softmax(run.logits[0], -1)
    torch.testing.assert_close(p_s, p_a, atol=1e-4, rtol=1e-3)
    if where != "middle":
        return
    result = steer_captures(loaded, cap_a, cap_b, layer=layer, alpha=1.0, mode="aligned", settings=SETTINGS)
    assert result.steered.kl > 0 or result.metric.answer is None or result.metric_a == result.metric_b
    if result.steered.logit_diff is not None:
        assert result.steered.logit_diff == pytest.approx(result.metric_a, abs=1e-3)


def test_sweep_equals_one_at_a_time(pair):
    """Each cell of the batched sweep (rows starting at their own block) equals the same steering
    run alone, which runs every block."""
    loaded, cap_a, cap_b = pair
    sweep = steering_sweep(loaded, cap_a, cap_b, alphas=(-1.0, 2.0), rows=5)
    assert len(sweep.kl) == loaded.n_layers + 1 and all(len(r) == 2 for r in sweep.kl)
    for layer in (0, loaded.n_layers // 2, loaded.n_layers):
        alone = steer_captures(loaded, cap_a, cap_b, layer=layer, alpha=2.0, settings=GenerationSettings(1))
        assert sweep.kl[layer][1] == pytest.approx(alone.steered.kl, rel=1e-3, abs=1e-6)
        if alone.steered.logit_diff is not None:
            assert sweep.logit_diff[layer][1] == pytest.approx(alone.steered.logit_diff, abs=1e-3)
    layer, alpha = sweep.best()
    assert re.search(rf"layer (is )?{layer}\b", sweep.reading()) and alpha in (-1.0, 2.0)


def test_rows_starting_at_their_layer_equal_whole_runs(pair):
    """`next_token_logits` starts each row at its steered block from B's captured residual; every
    row equals a whole run of B with the same value added (a [d] vector and a [pos, d] one), in
    one chunk and split over chunks of 2."""
    loaded, cap_a, cap_b = pair
    n = loaded.n_layers
    cells = []
    for layer in (n, 1, n // 2, 0, n - 1):
        cells.append((layer, 3.0 * steering_vector(loaded, cap_a, cap_b, layer, "last").value.float()))
        cells.append((layer, steering_vector(loaded, cap_a, cap_b, layer, "aligned").value.float()))
    ids = torch.tensor([cap_b.token_ids])
    whole = torch.cat([
        loaded.backend.run(ids, interventions=steering_interventions(n, layer, [value], "prompt")[0]).logits
        for layer, value in cells
    ])
    scale = whole.abs().max()
    for rows in (None, 2):
        started = next_token_logits(loaded, cap_b, cells, rows=rows)
        assert started.shape == (len(cells), loaded.vocab_size)
        torch.testing.assert_close(started, whole, atol=1e-5 * scale, rtol=1e-4)


def test_last_layer_last_vector_with_alpha_one_is_a(tiny_models):
    """At layer L the last position's residual alone decides the next token: adding h_A[L,−1] − h_B[L,−1]
    (α = 1) gives A's logit difference — what the sweep's last row shows as effect 1."""
    loaded = tiny_models["llama"]
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    sweep = steering_sweep(loaded, cap_a, cap_b, alphas=(1.0,))
    if sweep.metric.answer is not None:
        assert sweep.effect(loaded.n_layers, 0) == pytest.approx(1.0, abs=1e-3)


def test_vector_file_round_trip_and_refusals(tiny_models):
    loaded, other = tiny_models["llama"], tiny_models["gpt2"]
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    vector = steering_vector(loaded, cap_a, cap_b, 2, "mean")
    data = vector.to_bytes()
    back = load_vector(data, loaded, 2)
    assert back.layer == 2 and back.site == vector.site and torch.equal(back.value, vector.value)
    from_file = steer_captures(loaded, cap_a, cap_b, layer=2, alpha=1.5, settings=SETTINGS, vector_file=data)
    direct = steer_captures(loaded, cap_a, cap_b, layer=2, alpha=1.5, mode="mean", settings=SETTINGS)
    assert from_file.steered.continuation.token_ids == direct.steered.continuation.token_ids
    with pytest.raises(SettingsError, match="for layer 2.*not layer 1"):
        load_vector(data, loaded, 1)
    with pytest.raises(SettingsError, match="made with the model"):
        load_vector(data, other)
    with pytest.raises(SettingsError, match="damaged"):
        load_vector(data[: len(data) // 2], loaded)
    with pytest.raises(SettingsError, match="damaged"):
        load_vector(b"not a file at all", loaded)


def test_bad_steering_input(tiny_models):
    loaded = tiny_models["llama"]
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    gpt2 = tiny_models["gpt2"]  # a 1e30-sized push is refused before any run (it would be NaN)
    with pytest.raises(SettingsError, match="α = 1e\\+30 would add a vector .* times as long as the"):
        steer_captures(gpt2, capture(gpt2, A), capture(gpt2, B), layer=1, alpha=1e30, settings=SETTINGS)
    with pytest.raises(SettingsError, match="times as long as the residual"):
        steering_sweep(gpt2, capture(gpt2, A), capture(gpt2, B), alphas=(1e30,))
    with pytest.raises(SettingsError, match="layers 0 to 3"):
        steer_captures(loaded, cap_a, cap_b, layer=9, alpha=1.0, settings=SETTINGS)
    longer = capture(loaded, "The capital of France, in Europe, is")
    with pytest.raises(SettingsError, match="same length"):
        steer_captures(loaded, longer, cap_b, layer=1, alpha=1.0, mode="aligned", settings=SETTINGS)
    with pytest.raises(PromptError, match="reads at most"):
        steer_captures(loaded, cap_a, cap_b, layer=1, alpha=1.0, settings=GenerationSettings(200))
    third = capture(loaded, "I think that")
    result = steer_captures(loaded, cap_a, cap_b, third, layer=1, alpha=2.0, settings=SETTINGS)
    assert result.target == "I think that"
    assert result.unsteered.continuation.prompt_token_ids == third.token_ids


def test_progress_hears_the_steered_continuation_token_by_token_and_changes_nothing(family_model):
    """The Steering page's progress bar: each new token of the +α row arrives with the share of
    new tokens written; the result is the same as without it."""
    cap_a, cap_b = capture(family_model, "I love it"), capture(family_model, "I hate it")
    settings = GenerationSettings(6)
    heard = []
    kwargs = {"layer": 1, "alpha": 2.0, "settings": settings}
    with_bar = steer_captures(family_model, cap_a, cap_b, progress=lambda f, text: heard.append((f, text)),
                              **kwargs)
    plain = steer_captures(family_model, cap_a, cap_b, **kwargs)
    assert with_bar.to_dict() == plain.to_dict()
    assert heard and [f for f, _ in heard] == [(i + 1) / 6 for i in range(len(heard))]
    assert heard[-1][1] == plain.steered.continuation.text
