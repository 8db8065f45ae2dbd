"""The Patching page, driven with AppTest on the embedded model."""

from __future__ import annotations

import pytest
from app_helpers import open_page as open_link
from app_helpers import submit

from lib.analyses.patching import patch_residual, patched_lens
from lib.app import ui
from lib.app.cache import ModelKey

A, B = "The capital of France is", "The capital of Italy is"


def open_page(app, **request):
    return open_link(app, "pages/patching.py", **request)


def run_patching(app):
    app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    return app


def effect_grid(app):
    """Layers × positions: the table whose columns, after 'layer', are B's 'position · token'."""
    return next(df.value for df in app.dataframe if " · " in str(df.value.columns[-1]))


def lens_table(app):
    return next(df.value for df in app.dataframe if "B patched" in df.value.columns)


def picker(app, name: str):
    return next(s for s in app.selectbox if s.key and s.key.startswith(f"patching-{name}"))


@pytest.fixture(scope="module")
def expected(real_model):
    return patch_residual(real_model, A, B)


def test_patching_grid_holds_what_the_library_returns(app, expected):
    open_page(app, a=A, b=B)
    assert app.info and "Run patching" in app.info[0].value  # nothing runs before the button
    run_patching(app)
    assert not app.error
    grid = effect_grid(app)
    assert list(grid.columns[1:]) == [f"{p} · {t}" for p, t in enumerate(expected.tokens_b)]
    assert grid["layer"].tolist() == list(range(len(expected.effect)))
    for layer, row in enumerate(expected.effect):
        assert grid.iloc[layer, 1:].tolist() == pytest.approx(list(row), abs=5e-4)
        assert all(value == round(value, 3) for value in grid.iloc[layer, 1:])  # no 0.00000009
    assert any("␣Paris" in t.value and "␣Rome" in t.value for t in app.text)
    assert any("position 3 ('␣Italy'" in m.value for m in app.markdown)
    assert len(app.get("vega_lite_chart")) == 1


def test_picking_a_cell_shows_b_lens_after_that_patch(app, real_model):
    open_page(app, a=A, b=B)
    run_patching(app)
    layer = 24
    picker(app, "layer").set_value(layer).run()
    picker(app, "position").set_value(4).run()
    assert not app.exception, app.exception
    want = patched_lens(real_model, A, B, layer, 4)
    table = lens_table(app)
    assert table["B patched"].tolist() == [row[0].token for row in want.lens]
    assert table["p(B patched)"].tolist() == pytest.approx([row[0].prob for row in want.lens], abs=1e-5)
    assert table["B patched"].iloc[-1] == "␣Paris" and table["B"].iloc[-1] == "␣Rome"
    assert table["A"].iloc[-1] == "␣Paris"


def test_typed_tokens_with_the_space_mark_give_the_default_grid(app, expected):
    open_page(app, a=A, b=B)
    app.text_input(key="patching-answer").input("␣Paris")
    app.text_input(key="patching-wrong").input("␣Rome")
    run_patching(app)
    for layer, row in enumerate(expected.effect):
        assert effect_grid(app).iloc[layer, 1:].tolist() == pytest.approx(list(row), abs=5e-4)


def test_same_prediction_asks_for_tokens(app, real_model):
    open_page(app, a=A, b=A)
    run_patching(app)
    [error] = app.error
    assert "Name the answer and wrong tokens" in error.value


def test_a_word_missing_its_space_is_flagged_and_fixed_in_one_click_and_words_are_accepted(app, real_model):
    mary, john = "Mary, Claire. Mary gave milk to", "Mary, Claire. Claire gave milk to"  # 8 tokens
    open_page(app, a=mary, b=john)
    app.text_input(key="patching-answer").input("Claire").run()
    [warning] = app.warning
    assert "'Claire' ranks #" in warning.value
    assert "'␣Claire' (with a leading space) ranks #" in warning.value
    app.button(key="patching-answer-spaced").click().run()
    assert app.text_input(key="patching-answer").value == "␣Claire"
    assert not app.warning
    app.text_input(key="patching-wrong").input("␣Mary Ann")  # two tokens: scored whole by default
    run_patching(app)
    assert not app.error
    metric = next(t.value for t in app.text if t.value.startswith("Metric:"))
    assert metric.startswith("Metric: log p(␣Claire) − log p(␣Mary␣Ann)")


@pytest.mark.slow
def test_reopening_the_grid_runs_no_forward_pass(app, real_model):
    submit(app, a=A, b=B)  # the Compare page and its answers first: going back to it computes nothing
    app.switch_page("pages/patching.py").run()
    run_patching(app)
    model = ui.get_model(ModelKey())
    before = model.forward_passes
    app.switch_page("pages/compare.py").run()
    app.switch_page("pages/patching.py").run()
    assert not app.exception, app.exception
    assert effect_grid(app) is not None
    assert model.forward_passes == before
