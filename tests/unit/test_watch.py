"""Watched tokens per layer, and the BOS effect, checked against the model's own logits."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.bos import bos_effect
from lib.analyses.common.lens import TokenProb, lens_column
from lib.analyses.watch import (
    contrast_pair,
    logit_difference,
    trajectories,
    watch_tokens,
    word_score,
    word_scores,
)
from lib.core.capture import capture
from lib.core.tokens import readable_token, single_token, typed_word

A, B = "The capital of France is", "Claire and Mary went to the shops, then Mary gave a bottle of milk to"


def test_last_layer_matches_the_models_own_logits_and_ranks(family_model):
    cap = capture(family_model, A)
    own = cap.final_logits
    ids = own.topk(3).indices.tolist() + [single_token(family_model.tokenizer, " Rome").id]
    [*top, rome] = trajectories(family_model, cap.residual, ids)
    assert [t.rank[-1] for t in top] == [1, 2, 3]
    assert rome.rank[-1] == 1 + int((own > own[rome.id]).sum())
    probs = torch.softmax(own, -1)
    for t in (*top, rome):
        assert len(t.prob) == family_model.n_layers + 1
        assert t.prob[-1] == pytest.approx(probs[t.id].item(), abs=1e-5)


def test_logit_difference_follows_the_lens_including_softcap(family_model):
    cap = capture(family_model, B)
    claire, mary = (single_token(family_model.tokenizer, w).id for w in (" Claire", " Mary"))
    first, second = trajectories(family_model, cap.residual, [claire, mary])
    diff = logit_difference(first, second)
    for layer, value in enumerate(diff):
        logits = family_model.architecture.logits(cap.residual[layer, -1])
        assert value == pytest.approx((logits[claire] - logits[mary]).item(), abs=1e-4)
    assert diff[-1] == pytest.approx((cap.final_logits[claire] - cap.final_logits[mary]).item(), abs=1e-3)


def test_rank_one_is_the_lens_top_token_at_every_layer(family_model):
    cap = capture(family_model, A)
    column = lens_column(family_model, cap.residual, 2, 1)
    for cell in column:
        [t] = trajectories(family_model, cap.residual, [cell.top[0].id], position=2)
        assert t.rank[cell.layer] == 1
        assert t.prob[cell.layer] == pytest.approx(cell.top[0].prob, abs=1e-6)


def test_watch_follows_the_same_tokens_in_prompts_of_different_lengths(tiny_models):
    model = tiny_models["gemma2"]
    cap_a, cap_b = capture(model, A), capture(model, B)
    ids = [single_token(model.tokenizer, w).id for w in (" Paris", " Rome")]
    watch = watch_tokens(model, cap_a, cap_b, ids)
    assert (watch.position_a, watch.position_b) == (cap_a.n_tokens - 1, cap_b.n_tokens - 1)
    assert [t.id for t in watch.a] == [t.id for t in watch.b] == ids
    assert watch.a[0].prob != watch.b[0].prob
    assert watch.to_dict()["b"][1]["token"] == "␣Rome"


def test_bos_on_and_off_differ_by_exactly_the_bos_token(family_model):
    on, off = capture(family_model, A, "on"), capture(family_model, A, "off")
    pair = tuple(off.final_logits.topk(2).indices.tolist())
    effect = bos_effect(family_model, on, off, top_k=3, pair=pair)
    assert effect.on.tokens == (effect.bos_token, *effect.off.tokens)
    for run, cap in ((effect.on, on), (effect.off, off)):
        logits = cap.final_logits
        assert run.logit_difference == pytest.approx((logits[pair[0]] - logits[pair[1]]).item())
    assert effect.off.logit_difference > 0  # t1 is the top token without BOS
    assert [t.id for t in effect.on.top] == on.final_logits.topk(3).indices.tolist()
    assert effect.on.top != effect.off.top


def test_bos_pair_words_of_several_tokens_are_scored_whole_and_by_first_piece(family_model):
    claires, rome = (typed_word(family_model.tokenizer, w).ids for w in ("␣Claires", " Rome"))
    assert len(claires) == 2
    on, off = capture(family_model, A, "on"), capture(family_model, A, "off")
    effect = bos_effect(family_model, on, off, top_k=3, pair=(claires, rome[0]))
    assert effect.pair == ("␣Claires", "␣Rome") and effect.several_pieces
    assert effect.first_pieces == (readable_token(family_model.tokenizer, claires[0]), "␣Rome")
    for run, cap in ((effect.on, on), (effect.off, off)):
        with torch.no_grad():
            logits = family_model.model(input_ids=torch.tensor([[*cap.token_ids, claires[0]]])).logits[0]
        logp = torch.log_softmax(logits.double(), -1)
        first_piece = float(logits[-2, claires[0]] - logits[-2, rome[0]])
        assert run.logit_difference == pytest.approx(first_piece, abs=1e-3)
        whole = float(logp[-2, claires[0]] + logp[-1, claires[1]] - logp[-2, rome[0]])
        assert run.word_difference == pytest.approx(whole, abs=1e-3)


def test_contrast_pair_is_a_and_b_predictions_skipping_untypeable_tokens(tiny_tokenizer):
    def top(*ids: int) -> tuple[TokenProb, ...]:
        return tuple(TokenProb(readable_token(tiny_tokenizer, i), i, 0.1) for i in ids)

    paris, rome, claire = (single_token(tiny_tokenizer, w).id for w in (" Paris", " Rome", " Claire"))
    byte_piece = tiny_tokenizer("😀", add_special_tokens=False)["input_ids"][0]
    assert contrast_pair(tiny_tokenizer, top(byte_piece, paris), top(rome, paris)) == ("␣Paris", "␣Rome")
    assert contrast_pair(tiny_tokenizer, top(paris, claire), top(paris, rome)) == ("␣Paris", "␣Rome")
    assert contrast_pair(tiny_tokenizer, top(paris, claire), top(paris)) == ("␣Paris", "␣Claire")
    assert contrast_pair(tiny_tokenizer, top(byte_piece), top(byte_piece)) == ()


def test_a_two_piece_word_is_scored_whole_by_teacher_forcing(family_model):
    """score_ℓ = lens log p_ℓ(piece 1) + log p_L(piece 2 | prompt + piece 1), against a direct
    computation with the model itself."""
    tok = family_model.tokenizer
    word = typed_word(tok, "␣Claires")
    assert len(word.ids) == 2, word.pieces  # the tiny tokenizer splits it in two
    assert word.label() == f"␣Claires (first piece {word.pieces[0]})"
    cap = capture(family_model, A)
    score = word_score(family_model, cap, word.ids)
    with torch.no_grad():
        ids = torch.tensor([list(cap.token_ids) + [word.ids[0]]])
        logits = family_model.model(input_ids=ids).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    second = float(logp[-1, word.ids[1]])
    assert score.later == pytest.approx(second, abs=1e-4)
    assert score.logprob[-1] == pytest.approx(float(logp[-2, word.ids[0]]) + second, abs=1e-3)
    for layer in (0, family_model.n_layers // 2):
        lens = torch.log_softmax(family_model.backend.lens_logits(cap.residual[layer, -1][None]).float(), -1)
        assert score.logprob[layer] == pytest.approx(float(lens[0, word.ids[0]]) + second, abs=1e-4)


def test_a_one_token_word_scores_its_lens_log_probability(family_model):
    word = typed_word(family_model.tokenizer, " Rome")
    cap = capture(family_model, A)
    [score] = word_scores(family_model, cap, cap, [word.ids]).a
    (trajectory,) = trajectories(family_model, cap.residual, word.ids)
    assert score.later == 0.0
    assert score.prob == pytest.approx(trajectory.prob, rel=1e-4)
