"""The logit-lens grid, one cell's detail and the distance report, on tiny models."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.common.distances import distance_report, layer_distances
from lib.analyses.common.lens import (
    Arrival,
    TokenProb,
    arrival,
    cell_detail,
    lens_cells,
    lens_column,
    lens_grid,
    position_window,
)
from lib.core.capture import capture
from lib.core.errors import SettingsError

TEXT = "Claire and Mary went to the shops, then Mary gave a bottle of milk to"


def full_rank(model, cap, layer, position, token_id):
    logits = model.architecture.logits(cap.residual[layer, position])
    return int((logits > logits[token_id]).sum()) + 1


def test_lens_grid_holds_every_layer_at_the_window_and_nothing_else(family_model):
    cap = capture(family_model, TEXT)
    positions = position_window(cap.n_tokens, size=4, back=1)
    grid = lens_grid(family_model, cap, positions, k=3)
    assert grid.positions == tuple(range(cap.n_tokens - 5, cap.n_tokens - 1))
    assert grid.tokens == tuple(cap.tokens[p] for p in positions)
    assert len(grid.cells) == family_model.n_layers + 1
    assert all([c.position for c in row] == list(positions) for row in grid.cells)
    layer = family_model.n_layers // 2
    (alone,) = lens_cells(family_model, cap.residual, [(layer, positions[2])], k=3)
    cell = grid.cells[layer][2]
    assert [t.id for t in cell.top] == [t.id for t in alone.top]  # another batch: equal up to float
    assert [t.prob for t in cell.top] == pytest.approx([t.prob for t in alone.top], rel=1e-5)


def test_lens_grid_last_row_is_the_models_own_prediction(family_model):
    cap = capture(family_model, TEXT)
    grid = lens_grid(family_model, cap, position_window(cap.n_tokens, size=3), k=1)
    assert grid.final_id(-1) == int(cap.final_logits.argmax())
    assert all(grid.matches_final(family_model.n_layers, i) for i in range(3))


def test_lens_grid_refuses_positions_outside_the_prompt(tiny_models):
    model = tiny_models["llama"]
    cap = capture(model, "The capital of France is")
    with pytest.raises(SettingsError, match="Positions run from 0"):
        lens_grid(model, cap, [cap.n_tokens], k=3)


def test_cell_detail_ranks_below_are_ranks_over_the_whole_vocabulary(family_model):
    cap = capture(family_model, TEXT)
    layer, position = family_model.n_layers, cap.n_tokens - 2
    detail = cell_detail(family_model, cap, layer, position, k=5)
    assert [t.rank for t in detail.top] == [1, 2, 3, 4, 5]
    for t in detail.top:
        assert t.rank_below == full_rank(family_model, cap, layer - 1, position, t.id)
        assert t.rank_change == t.rank_below - t.rank
        probs_below = torch.softmax(family_model.architecture.logits(cap.residual[layer - 1, position]), -1)
        assert t.prob_below == pytest.approx(float(probs_below[t.id]), rel=1e-5)
    (cell,) = lens_cells(family_model, cap.residual, [(layer, position)], 5)
    assert [t.id for t in detail.top] == [t.id for t in cell.top]


def test_cell_detail_at_layer_zero_has_no_layer_below(tiny_models):
    model = tiny_models["gpt2"]
    cap = capture(model, TEXT)
    detail = cell_detail(model, cap, 0, 0, k=3)
    assert all(t.rank_below is None and t.rank_change is None for t in detail.top)


def test_position_window_clips_to_the_prompt():
    assert position_window(20, 4) == (16, 17, 18, 19)
    assert position_window(20, 4, back=2) == (14, 15, 16, 17)
    assert position_window(3, 16) == (0, 1, 2)
    assert position_window(3, 16, back=10) == (0,)


def test_arrival_is_the_layer_from_which_the_answer_stays_top1(tiny_models):
    model = tiny_models["llama"]
    cap = capture(model, TEXT)
    column = [c.top for c in lens_column(model, cap.residual, -1, 5)]
    answer = column[-1][0].id
    found = arrival(column, answer)
    layer = found.stays_from
    assert all(column[l][0].id == answer for l in range(layer, len(column)))
    assert layer == 0 or column[layer - 1][0].id != answer
    assert found.earlier == tuple(l for l in range(layer) if column[l][0].id == answer)
    assert arrival(column, answer, within=5).stays_from <= layer
    assert arrival(column, -1) == Arrival(1, None, ())


def test_arrival_reports_a_brief_early_appearance_separately():
    def top(token_id):
        return (TokenProb("x", token_id, 0.5),)

    column = [top(7), top(1), top(7), top(2), top(7), top(7)]  # the Kobe pattern: top-1 at 0, 2, then from 4
    found = arrival(column, 7)
    assert (found.stays_from, found.earlier) == (4, (0, 2))
    assert found.sentence("'␣Lakers'") == "'␣Lakers' is top-1 from layer 4 on (briefly also at layers 0, 2)"
    assert arrival(column[:4], 7).sentence("it") == (
        "it is not top-1 at the last layer (only briefly, at layers 0, 2)")


def test_distance_report_of_identical_prompts_says_identical(tiny_models):
    cap = capture(tiny_models["llama"], TEXT)
    report = distance_report(cap.residual, cap.residual)
    assert report.summary() == "A and B are identical at every layer."
    assert max(max(row) for row in report.positions.cosine) == 0


@pytest.mark.parametrize("bos", ["on", "off"])
def test_distance_report_leaves_out_the_first_position_whatever_the_bos(tiny_models, bos):
    model = tiny_models["llama"]
    a = capture(model, "You have happy emotion in yourself!", bos)
    b = capture(model, "You have angry emotion in yourself!", bos)
    kept = distance_report(a.residual, b.residual, drop_first=False)
    dropped = distance_report(a.residual, b.residual)  # the default
    assert kept.last == dropped.last == layer_distances(a.residual, b.residual, "last")
    assert (kept.positions.first_position, dropped.positions.first_position) == (0, 1)
    for report in (kept, dropped):  # the mean of the per-position distances, not of averaged states
        assert report.mean.cosine == pytest.approx([sum(r) / len(r) for r in report.positions.cosine])
    longer = capture(model, "You have a very angry emotion in yourself!", bos)
    assert distance_report(a.residual, longer.residual).positions is None
    assert distance_report(a.residual, longer.residual).mean is None
    assert f"peaks at layer {dropped.last.peak_layer()}" in dropped.summary()
    assert "mean of the per-position distances (first position left out)" in dropped.summary()
