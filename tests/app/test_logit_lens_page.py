"""The Logit lens page, driven with AppTest on the embedded model."""

from __future__ import annotations

import pytest
from app_helpers import open_page as open_view

from lib.analyses.common.lens import cell_detail, lens_column
from lib.app import ui
from lib.app.cache import ModelKey
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"


def open_page(app, **request):
    open_view(app, "pages/logit_lens.py", **request)
    assert not app.error


def cell_tables(app):
    return [df.value for df in app.dataframe if "climbed" in df.value.columns]


def assert_table_is_cell(table, expected):
    assert list(table["token"]) == [t.token for t in expected.top]
    assert table["prob"].tolist() == pytest.approx([t.prob for t in expected.top], rel=1e-5)
    assert [None if v is None or v != v else int(v) for v in table["rank below"].astype(object)] == [
        t.rank_below for t in expected.top
    ]


def test_logit_lens_cell_tables_hold_what_cell_detail_returns(app, real_model):
    open_page(app, a=A, b=B, k=5)
    assert len(app.get("vega_lite_chart")) == 2  # A's and B's heatmaps
    tables = cell_tables(app)
    assert len(tables) == 2
    for table, text in zip(tables, (A, B), strict=True):
        cap = capture(real_model, text)
        assert_table_is_cell(table, cell_detail(real_model, cap, real_model.n_layers, cap.n_tokens - 1, 5))


def test_logit_lens_picking_a_cell_shows_that_cell_for_both_prompts(app, real_model):
    open_page(app, a=A, b=B, k=5)
    app.selectbox(key="lens_layer").set_value(12)
    app.selectbox(key="lens_offset").set_value(2)
    app.run()
    assert not app.exception, app.exception
    for table, text in zip(cell_tables(app), (A, B), strict=True):
        cap = capture(real_model, text)
        assert_table_is_cell(table, cell_detail(real_model, cap, 12, cap.n_tokens - 3, 5))


def test_logit_lens_names_the_layer_from_which_the_final_answer_stays_top1(app, real_model):
    open_page(app, a=A, b=B)
    sentences = [t.value for t in app.text if t.value.startswith("Final answer")]
    for sentence, text, answer in zip(sentences, (A, B), ("␣Paris", "␣Rome"), strict=True):
        column = [c.top for c in lens_column(real_model, capture(real_model, text).residual, -1, 1)]
        stays = next(l for l in range(len(column)) if all(column[m][0].token == answer
                                                          for m in range(l, len(column))))
        assert sentence.startswith(f"Final answer '{answer}' is top-1 from layer {stays} on")


@pytest.mark.slow
def test_logit_lens_display_changes_run_no_forward_pass(app, real_model):
    open_page(app, a=A, b=B)
    model = ui.get_model(ModelKey())
    before = model.forward_passes
    assert before > 0  # the app's own model object, which ran both prompts
    app.radio(key="lens_colour").set_value("entropy").run()
    app.number_input(key="lens_size").set_value(3).run()
    app.number_input(key="lens_back").set_value(1).run()
    app.selectbox(key="lens_layer").set_value(0).run()
    assert not app.exception, app.exception
    assert model.forward_passes == before


@pytest.mark.slow
def test_logit_lens_shows_prompt_text_as_text_not_markdown(app, real_model):
    a = "**bold** <b>tag</b> _x_"
    open_page(app, a=a, b=B)
    assert a in [t.value for t in app.text]
    assert not any(a in m.value for m in app.markdown)
