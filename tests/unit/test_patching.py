"""Activation patching is exact where the definition says it must be, on every tiny family."""

from __future__ import annotations

import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import torch

import lib.analyses.common.rows
import lib.analyses.patching
from lib.analyses.common.lens import lens_column
from lib.analyses.common.rows import stage_starts
from lib.analyses.compare import compare_prompts
from lib.analyses.patching import (
    Patch,
    grid_patches,
    patch_captures,
    patch_residual,
    patched_lens,
    patched_logits,
    reading,
    space_hint,
)
from lib.core.backend import Intervention
from lib.core.capture import capture
from lib.core.errors import PromptError
from lib.core.models import load_model
from lib.core.sites import Site
from lib.core.tokens import single_token, typed_word

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"
TOLERANCE = 1e-4  # float32 logits; a batched pass may sum in another order than a single one


def contrast_tokens(cap_a, cap_b) -> dict[str, int]:
    """answer and wrong: the ids whose logit difference moves most between A and B, so that
    m_A − m_B is wide even on random models (whose top-1 often coincide)."""
    diff = cap_a.final_logits - cap_b.final_logits
    return {"answer": int(diff.argmax()), "wrong": int(diff.argmin())}


def contrast(model, prompt_a: str, prompt_b: str) -> dict[str, int]:
    return contrast_tokens(capture(model, prompt_a), capture(model, prompt_b))


@pytest.fixture
def france_italy(family_model):
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    result = patch_captures(family_model, cap_a, cap_b, **contrast_tokens(cap_a, cap_b))
    differing = [p for p, (a, b) in enumerate(zip(cap_a.token_ids, cap_b.token_ids, strict=True)) if a != b]
    assert len(differing) == 1, "the pair must differ in exactly one token"
    return cap_a, cap_b, result, differing[0]


def test_layer_zero_effect_is_one_at_the_differing_token_and_zero_elsewhere(france_italy):
    _, _, result, differing = france_italy
    for p, effect in enumerate(result.effect[0]):
        assert effect == pytest.approx(1.0 if p == differing else 0.0, abs=TOLERANCE)


def test_last_layer_effect_is_one_at_the_last_position_and_zero_elsewhere(france_italy):
    _, cap_b, result, _ = france_italy
    last = cap_b.n_tokens - 1
    for p, effect in enumerate(result.effect[-1]):
        assert effect == pytest.approx(1.0 if p == last else 0.0, abs=TOLERANCE)


def test_grid_covers_every_layer_and_position_with_raw_metric(france_italy, family_model):
    _, cap_b, result, _ = france_italy
    assert len(result.effect) == len(result.raw) == family_model.n_layers + 1
    assert all(len(row) == cap_b.n_tokens for row in result.effect + result.raw)
    assert result.positions == tuple(range(cap_b.n_tokens)) and result.note is None
    for effect_row, raw_row in zip(result.effect, result.raw, strict=True):
        for effect, raw in zip(effect_row, raw_row, strict=True):
            expected = (raw - result.metric_b) / (result.metric_a - result.metric_b)
            assert effect == pytest.approx(expected, abs=1e-12)


def test_metric_is_the_logit_difference_of_each_prompt(france_italy):
    cap_a, cap_b, result, _ = france_italy
    a, w = result.answer.id, result.wrong.id
    assert result.metric_a == pytest.approx(float(cap_a.final_logits[a] - cap_a.final_logits[w]), abs=1e-5)
    assert result.metric_b == pytest.approx(float(cap_b.final_logits[a] - cap_b.final_logits[w]), abs=1e-5)


def test_patching_own_activations_changes_nothing(family_model):
    cap_b = capture(family_model, ITALY)
    patches, _, _ = grid_patches(cap_b, cap_b, family_model.n_layers)
    logits = patched_logits(family_model, cap_b, cap_b, patches)
    assert (logits - cap_b.final_logits).abs().max().item() <= TOLERANCE


def test_patching_a_whole_layer_reproduces_a_logits(family_model):
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    everywhere = tuple(range(cap_b.n_tokens))
    patches = [Patch(layer, everywhere, everywhere) for layer in range(family_model.n_layers + 1)]
    logits = patched_logits(family_model, cap_a, cap_b, patches)
    assert (logits - cap_a.final_logits).abs().max().item() <= TOLERANCE
    assert (cap_a.final_logits - cap_b.final_logits).abs().max().item() > 100 * TOLERANCE


def own_value_cells(cap_a, cap_b) -> list[tuple[int, int]]:
    """(layer, position) cells where A's residual is bit for bit B's own."""
    return [(layer, p) for layer in range(cap_b.residual.shape[0]) for p in range(cap_b.n_tokens)
            if torch.equal(cap_a.residual[layer, p], cap_b.residual[layer, p])]


def test_batched_grid_equals_one_cell_per_pass(family_model, monkeypatch):
    monkeypatch.setattr(lib.analyses.common.rows, "STAGE_COST", 0)  # a pass at every starting block
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    tokens = contrast_tokens(cap_a, cap_b)
    cells = (family_model.n_layers + 1) * cap_b.n_tokens
    before = family_model.forward_passes
    batched = patch_captures(family_model, cap_a, cap_b, **tokens)
    batched_passes = family_model.forward_passes - before
    single = patch_captures(family_model, cap_a, cap_b, **tokens, rows=1)
    # one staged pass per block a row can start at (residual L's rows join the last block's stage);
    # a cell whose patch writes B's own values is B's run, read without a pass
    single_passes = family_model.forward_passes - before - batched_passes
    changed_cells = cells - len(own_value_cells(cap_a, cap_b))
    assert batched_passes == family_model.n_layers < single_passes == changed_cells
    for batched_row, single_row in zip(batched.raw, single.raw, strict=True):
        assert batched_row == pytest.approx(single_row, abs=TOLERANCE)


def test_cells_before_the_first_differing_token_are_bs_own_run_without_a_pass(france_italy, family_model):
    """A causal model computes the same at positions before the first token where A and B differ,
    bit for bit, at every layer: patching there writes B's own values, so the cell is m_B exactly
    (and needs no pass); recomputed, it agrees to float rounding."""
    cap_a, cap_b, result, differing = france_italy
    n = family_model.n_layers
    own = own_value_cells(cap_a, cap_b)
    assert {(layer, p) for layer in range(n + 1) for p in range(differing)} <= set(own)
    recomputed = patched_logits(family_model, cap_a, cap_b, [Patch(l, (p,), (p,)) for l, p in own])
    for (layer, p), logits in zip(own, recomputed, strict=True):
        assert result.raw[layer][p] == result.metric_b
        computed = float(logits[result.answer.id].double() - logits[result.wrong.id].double())
        assert computed == pytest.approx(result.metric_b, abs=TOLERANCE)


@contextmanager
def rows_through_blocks(model):
    """Count the rows each block really runs (its attention's input batch; skipped blocks hand their
    input on without calling it): yields a list [rows per block], filled as passes run."""
    counts = [0] * model.n_layers
    handles = []
    for layer in range(model.n_layers):
        def count(module, args, kwargs, layer=layer):
            hidden = args[0] if args else kwargs["hidden_states"]
            counts[layer] += hidden.shape[0]
        attention = model.architecture.block_parts(layer).attention
        handles.append(attention.register_forward_pre_hook(count, with_kwargs=True))  # test-only probe
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def test_each_patched_row_runs_only_the_blocks_from_its_layer_on(family_model, monkeypatch):
    """The cost model of `patched_rows`: a cell patched at residual ℓ runs blocks ℓ…L−1 (residual L's
    cells run the last block, whose output they replace), not all L; every row from block 0 is
    the same grid (same numbers) at (L + 1)·L block-rows per position."""
    monkeypatch.setattr(lib.analyses.common.rows, "STAGE_COST", 0)  # a pass at every starting block
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    n, pos = family_model.n_layers, cap_b.n_tokens
    patches, _, _ = grid_patches(cap_a, cap_b, n)
    with rows_through_blocks(family_model) as staged:
        resumed = patched_logits(family_model, cap_a, cap_b, patches)
    with rows_through_blocks(family_model) as whole:
        from_zero = patched_logits(family_model, cap_a, cap_b, patches, resume=False)
    assert staged == [pos * (layer + 1) for layer in range(n - 1)] + [pos * (n + 1)]
    assert whole == [pos * (n + 1)] * n
    assert (resumed - from_zero).abs().max().item() <= TOLERANCE


def stages_cost(stages, starts, n, tokens, stage_cost):
    ends = [*stages[1:], n]
    return sum(stage_cost + (e - s) * tokens * (len(starts) if e == n else sum(x < e for x in starts))
               for s, e in zip(stages, ends, strict=True))


@pytest.mark.parametrize("stage_cost", [0, 64, 256, 10_000])
def test_passes_begin_where_the_cost_model_says_the_work_is_least(monkeypatch, stage_cost):
    """No pass of its own is worth a row or two; with no cost per pass every starting block gets one."""
    monkeypatch.setattr(lib.analyses.common.rows, "STAGE_COST", stage_cost)
    n, tokens = 30, 5
    starts = sorted(min(layer, n - 1) for layer in range(n + 1) for _ in range(tokens))
    chosen = stage_starts(starts, n, tokens)
    assert chosen[0] == 0 and chosen == sorted(set(chosen)) and set(chosen) <= set(starts)
    every, one = sorted(set(starts)), [0]
    cost = [stages_cost(stages, starts, n, tokens, stage_cost) for stages in (chosen, every, one)]
    assert cost[0] <= min(cost[1:])
    if stage_cost == 0:
        assert chosen == every
    if stage_cost == 10_000:
        assert chosen == one


def test_small_batches_report_progress_up_to_one(family_model):
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    seen: list[float] = []
    patch_captures(family_model, cap_a, cap_b, **contrast_tokens(cap_a, cap_b), progress=seen.append, rows=4)
    cells = (family_model.n_layers + 1) * cap_b.n_tokens - len(own_value_cells(cap_a, cap_b))
    assert len(seen) == math.ceil(cells / 4)  # one report per chunk of 4 rows that ran
    assert seen == sorted(seen) and seen[-1] == 1.0 and seen[0] > 0


def assert_model_free(model) -> None:
    """No hook of ours left on any module (transformers installs its own output-capturing hooks
    once a model has run with eager attention), and another thread can take the model's lock."""
    for module in model.model.modules():
        for hook in (*module._forward_pre_hooks.values(), *module._forward_hooks.values()):
            assert hook.__module__.startswith("transformers."), f"{hook} left on {type(module).__name__}"
    acquired: list[bool] = []

    def take_lock_elsewhere() -> None:
        if model.lock.acquire(timeout=5):
            acquired.append(True)
            model.lock.release()

    other = threading.Thread(target=take_lock_elsewhere)
    other.start()
    other.join()
    assert acquired == [True], "the model's lock is still held"


def test_hooks_are_removed_when_a_patched_run_raises(family_model, monkeypatch):
    class Failing(Intervention):
        def apply(self, act, n_heads=None):
            raise RuntimeError("hook failed")

    def failing(cap_a, patches, n_layers):
        zero = torch.zeros(1)
        return [Failing(Site(1, "mlp_out"), "add", zero), Failing(Site(0, "z"), "add", zero)]

    tokens = contrast(family_model, FRANCE, ITALY)
    monkeypatch.setattr(lib.analyses.patching, "patch_interventions", failing)
    with pytest.raises(RuntimeError, match="hook failed"):
        patch_residual(family_model, FRANCE, ITALY, **tokens)
    assert_model_free(family_model)


def test_a_failing_progress_callback_leaves_the_model_free(family_model):
    def fail(done: float) -> None:
        raise RuntimeError("progress failed")

    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    with pytest.raises(RuntimeError, match="progress failed"):
        patch_captures(family_model, cap_a, cap_b, **contrast_tokens(cap_a, cap_b), progress=fail, rows=2)
    assert_model_free(family_model)


def test_hooks_are_removed_after_patching(family_model):
    patch_residual(family_model, FRANCE, ITALY, **contrast(family_model, FRANCE, ITALY))
    patched_lens(family_model, FRANCE, ITALY, 1, 0)
    assert_model_free(family_model)


def test_unequal_lengths_patch_only_the_last_position_and_say_why(family_model):
    longer = "The capital of Italy is the"
    result = patch_residual(family_model, FRANCE, longer, **contrast(family_model, FRANCE, longer))
    n_b = len(result.tokens_b)
    assert n_b != len(result.tokens_a)
    assert result.positions == (n_b - 1,) and not result.full_grid
    assert all(len(row) == 1 for row in result.effect)
    assert "only the last position" in result.note
    assert result.effect[-1][0] == pytest.approx(1.0, abs=TOLERANCE)
    assert "Only the last position" in reading(result)


def test_same_top_token_asks_the_user_for_tokens(family_model):
    with pytest.raises(PromptError, match="Name the answer and wrong tokens"):
        patch_residual(family_model, ITALY, ITALY)


def test_same_answer_and_wrong_token_is_refused(family_model):
    with pytest.raises(PromptError, match="same"):
        patch_residual(family_model, FRANCE, ITALY, answer=" Paris", wrong=" Paris")


def test_a_multi_token_answer_is_measured_by_its_first_piece(family_model):
    word = patch_residual(family_model, FRANCE, ITALY, answer=" Paris is", wrong=" Rome")
    first = patch_residual(family_model, FRANCE, ITALY, answer=" Paris", wrong=" Rome")
    assert word.answer.id == first.answer.id and word.answer.word == "␣Paris␣is"
    assert word.answer.label == "␣Paris (first piece of ␣Paris␣is)"
    assert word.effect == first.effect


def direct_word_logprob(model, prefix, word, patch=None) -> float:
    """log p(word | prefix) = Σ_j log p(w_j | prefix, w_1 … w_{j−1}) from the model's own logits of
    one unbatched pass, with `patch` = (layer, position, value) written into the residual."""
    context = torch.tensor([[*prefix, *word[:-1]]])
    if patch is None:
        with torch.no_grad():
            logits = model.model(input_ids=context).logits[0]
    else:
        layer, position, value = patch
        site = Site.residual_at(layer, model.n_layers)
        change = Intervention(site, "replace", value[None], positions=(position,))
        logits = model.backend.run(context, interventions=[change], all_positions=True).logits[0]
    logp = torch.log_softmax(logits.double(), -1)
    return sum(float(logp[len(prefix) - 1 + j, w]) for j, w in enumerate(word))


def test_a_two_piece_word_is_scored_whole_by_teacher_forcing(family_model):
    """m = log p(answer word) − log p(wrong word), each summed over its pieces, against a direct
    computation: unpatched A and B, and single patched cells run one at a time."""
    tok = family_model.tokenizer
    answer, wrong = typed_word(tok, "␣Claires"), typed_word(tok, " Rome")
    assert len(answer.ids) == 2, answer.pieces  # the tiny tokenizer splits it in two
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    words = {"answer": "␣Claires", "wrong": " Rome"}
    result = patch_captures(family_model, cap_a, cap_b, **words, score="word", rows=5)
    assert result.score == "word" and result.answer.word == "␣Claires"
    assert result.metric_label == "log p(␣Claires) − log p(␣Rome)"

    def metric(cap, patch=None) -> float:
        return (direct_word_logprob(family_model, cap.token_ids, answer.ids, patch)
                - direct_word_logprob(family_model, cap.token_ids, wrong.ids, patch))

    assert result.metric_a == pytest.approx(metric(cap_a), abs=1e-3)
    assert result.metric_b == pytest.approx(metric(cap_b), abs=1e-3)
    last = cap_b.n_tokens - 1
    for layer, position in ((0, 3), (family_model.n_layers // 2, last), (family_model.n_layers, last)):
        expected = metric(cap_b, (layer, position, cap_a.residual[layer, position]))
        assert result.raw[layer][position] == pytest.approx(expected, abs=1e-3)
    first_piece = patch_captures(family_model, cap_a, cap_b, **words)
    assert first_piece.score == "logit" and first_piece.metric_label == (
        f"logit[{answer.pieces[0]} (first piece of ␣Claires)] − logit[␣Rome]")
    assert result.raw != first_piece.raw


def test_whole_word_grid_is_the_same_on_the_nnsight_backend_and_its_remote_path(tiny_models, tiny_folders):
    """The whole-word score, summed inside the run (`reduce`), is the same through nnsight, locally
    and shipped as for NDIF (remote="local")."""
    hooks = tiny_models["llama"]
    caps = capture(hooks, FRANCE), capture(hooks, ITALY)
    words = {"answer": "␣Claires", "wrong": " Rome", "score": "word", "rows": 5}
    expected = torch.tensor(patch_captures(hooks, *caps, **words).raw)
    for remote in ({}, {"remote": "local"}):
        nnsight = load_model(str(tiny_folders["llama"]), backend="nnsight", **remote)
        got = torch.tensor(patch_captures(nnsight, *caps, **words).raw)
        torch.testing.assert_close(got, expected, rtol=0, atol=TOLERANCE)


def test_scoring_one_token_words_whole_is_the_logit_difference(family_model):
    """For one-token words log p(a) − log p(w) = logit[a] − logit[w]: the softmax's normaliser cancels."""
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    tokens = contrast_tokens(cap_a, cap_b)
    logit = patch_captures(family_model, cap_a, cap_b, **tokens)
    word = patch_captures(family_model, cap_a, cap_b, **tokens, score="word")
    assert word.metric_a == pytest.approx(logit.metric_a, abs=1e-3)
    for word_row, logit_row in zip(word.effect, logit.effect, strict=True):
        assert word_row == pytest.approx(logit_row, abs=1e-3)


def test_words_sharing_a_first_piece_need_whole_word_scores(family_model):
    tok = family_model.tokenizer
    first = typed_word(tok, "␣Claires").pieces[0]
    with pytest.raises(PromptError, match="Score whole words"):
        patch_residual(family_model, FRANCE, ITALY, answer="␣Claires", wrong=first)


def test_space_hint_offers_the_spaced_word_when_it_ranks_far_higher(family_model):
    tok = family_model.tokenizer
    spaced = single_token(tok, " Paris").id
    plain = typed_word(tok, "Paris").first_id
    logits = torch.zeros(family_model.vocab_size)
    logits[spaced], logits[plain] = 10.0, -10.0
    hint = space_hint(family_model, logits, "Paris")
    assert hint is not None and hint.spaced == "␣Paris" and hint.rank_spaced == 1 and hint.rank_typed > 10
    assert space_hint(family_model, logits, "␣Paris") is None
    logits[plain] = 10.0  # as likely: no hint
    assert space_hint(family_model, logits, "Paris") is None


def test_typed_space_mark_names_the_same_token_as_a_space(family_model):
    typed = patch_residual(family_model, FRANCE, ITALY, answer="␣Paris", wrong="␣Rome")
    spaced = patch_residual(family_model, FRANCE, ITALY, answer=" Paris", wrong=" Rome")
    assert (typed.answer, typed.wrong) == (spaced.answer, spaced.wrong)
    assert typed.answer.token == "␣Paris"


def test_unknown_token_id_is_refused(family_model):
    with pytest.raises(PromptError, match="does not exist"):
        patch_residual(family_model, FRANCE, ITALY, answer=family_model.vocab_size, wrong=0)


def test_patched_lens_follows_b_before_the_patch_and_a_at_the_last_layer(family_model):
    cap_a, cap_b = capture(family_model, FRANCE), capture(family_model, ITALY)
    last, n_layers = cap_b.n_tokens - 1, family_model.n_layers
    own_b = lens_column(family_model, cap_b.residual, -1, 5)
    own_a = lens_column(family_model, cap_a.residual, -1, 5)
    middle = patched_lens(family_model, FRANCE, ITALY, 1, last, top_k=5)
    assert [t.id for t in middle.lens[0]] == [t.id for t in own_b[0].top]
    assert [t.id for t in middle.lens[1]] == [t.id for t in own_a[1].top]  # the patched cell is A's
    at_end = patched_lens(family_model, FRANCE, ITALY, n_layers, last, top_k=5)
    assert [t.id for t in at_end.lens[n_layers]] == [t.id for t in own_a[n_layers].top]
    assert [t.id for t in at_end.lens[n_layers - 1]] == [t.id for t in own_b[n_layers - 1].top]


def test_patched_lens_refuses_cells_outside_the_grid(family_model):
    with pytest.raises(PromptError, match="does not exist"):
        patched_lens(family_model, FRANCE, ITALY, family_model.n_layers + 1, 0)
    with pytest.raises(PromptError, match="only the last position"):
        patched_lens(family_model, FRANCE, "The capital of Italy is the", 0, 0)


def test_reading_names_where_the_difference_starts_and_the_metric_tokens(france_italy):
    _, _, result, differing = france_italy
    text = reading(result)
    assert f"position {differing} ('{result.tokens_b[differing]}'" in text
    assert result.answer.token in text and result.wrong.token in text


def test_result_to_dict_is_json_with_the_documented_keys(france_italy):
    _, _, result, _ = france_italy
    data = json.loads(json.dumps(result.to_dict()))
    assert {"metric", "answer", "wrong", "tokens_b", "effect", "raw", "note"} <= data.keys()
    assert data["metric"] == {"a": result.metric_a, "b": result.metric_b, "score": "logit"}
    assert data["answer"] == {"token": result.answer.token, "id": result.answer.id, "word": ""}
    assert data["effect"] == [list(r) for r in result.effect]


def test_concurrent_compare_and_patch_match_serial_results(family_model):
    pairs = [(FRANCE, ITALY), ("You have happy emotion in yourself!", "You have angry emotion in yourself!")]
    tokens = [contrast(family_model, a, b) for a, b in pairs]

    def run(i: int, barrier: threading.Barrier | None = None) -> dict:
        """Even i: compare_prompts; odd i: patch_residual; alternating between the two pairs."""
        (a, b), pair_tokens = pairs[(i // 2) % 2], tokens[(i // 2) % 2]
        if barrier is not None:
            barrier.wait()
        if i % 2 == 0:
            return compare_prompts(family_model, a, b, top_k=5).to_dict()
        return patch_residual(family_model, a, b, **pair_tokens).to_dict()

    serial = [run(i) for i in range(8)]
    barrier = threading.Barrier(8)
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda i: run(i, barrier), range(8)))
    assert concurrent == serial
    assert_model_free(family_model)



def test_patching_results_hold_the_metric_fields_once_and_serialize_them_flat_first():
    """PatchResult and ComponentPatching extend MetricPair: its fields come first, by name, in
    History's records (fields by name) as before they were shared."""
    from dataclasses import fields

    from lib.analyses.common.metric import MetricPair
    from lib.analyses.components import ComponentPatching
    from lib.analyses.patching import PatchResult

    shared = [f.name for f in fields(MetricPair)]
    assert shared == ["model", "bos", "answer", "wrong", "metric_a", "metric_b", "tokens_a", "tokens_b"]
    for result in (PatchResult, ComponentPatching):
        assert [f.name for f in fields(result)][: len(shared)] == shared
