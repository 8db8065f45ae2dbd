"""The Components page, driven with AppTest: DLA and patterns on the embedded model, head patching
and the bad-input cases on a tiny model (fast)."""

from __future__ import annotations

import pytest
from app_helpers import compare_two
from app_helpers import open_page as open_link
from bad_input_cases import COMPONENT_CASES, component_kwargs

from lib.analyses.components import attention_patterns, attribute_captures, patch_components
from lib.core.capture import capture

A, B = "The capital of France is", "The capital of Italy is"
PAGE = "pages/components.py"


def open_page(app, **request):
    return open_link(app, PAGE, **request)


def press(app, key: str):
    app.button(key=key).click().run()
    assert not app.exception, app.exception
    return app


def table_with(app, column: str):
    return next(df.value for df in app.dataframe if column in df.value.columns)


def test_dla_and_patterns_show_what_the_library_returns(app, real_model):
    open_page(app, a=A, b=B)
    assert app.info and "Run components" in app.info[0].value  # nothing runs before the button
    press(app, "components-run")
    assert not app.error
    expected = attribute_captures(real_model, capture(real_model, A), capture(real_model, B))
    metric = next(t.value for t in app.text if t.value.startswith("Metric: logit["))
    assert "␣Paris" in metric and "␣Rome" in metric and f"A: {expected.a.logit_diff:.3f}" in metric
    assert any("largest direct contributions" in m.value for m in app.markdown)
    assert len(app.get("vega_lite_chart")) >= 6 + 2  # 3 layer bar charts, 3 head maps, A and B patterns
    app.selectbox(key="components-layer").set_value(3).run()
    app.selectbox(key="components-head").set_value(2).run()
    assert not app.exception, app.exception
    patterns = attention_patterns(real_model, capture(real_model, A), capture(real_model, B))
    looks = table_with(app, "A weight")
    assert looks["A weight"].tolist() == pytest.approx(patterns.a[3, 2, -1].tolist(), abs=1e-6)
    assert looks["A weight"].sum() == pytest.approx(1.0, abs=1e-5)
    assert app.info and "Run head patching" in app.info[0].value  # nothing patched before the button


def test_looking_at_other_layers_heads_and_queries_runs_no_forward_pass(app, real_model):
    open_page(app, a=A, b=B)
    press(app, "components-run")
    before = real_model.forward_passes
    app.selectbox(key="components-layer").set_value(5).run()
    app.selectbox(key="components-head").set_value(4).run()
    app.selectbox(key="components-query").set_value(2).run()
    assert not app.exception, app.exception
    assert real_model.forward_passes == before


def test_head_patching_grid_holds_what_the_library_returns(app, tiny_folders, tiny_models):
    open_page(app, a=A, b=B, model=str(tiny_folders["gpt2"]))
    app.text_input(key="components-answer").input("␣Paris")
    app.text_input(key="components-wrong").input("␣Rome")
    press(app, "components-run")
    press(app, "components-patch")
    assert not app.error
    model = tiny_models["gpt2"]
    expected = patch_components(model, capture(model, A), capture(model, B), answer=" Paris", wrong=" Rome")
    worst, grid = [df.value for df in app.dataframe if "attribution" in df.value.columns]
    assert len(worst) == 5 and len(grid) == model.n_layers * model.architecture.n_heads
    got = {(r.layer, r.head): (r.exact, r.attribution) for r in grid.itertuples()}
    for layer, row in enumerate(expected.heads):
        for head, cell in enumerate(row):
            assert got[(layer, head)][0] == pytest.approx(cell[0], abs=1e-5)
            assert got[(layer, head)][1] == pytest.approx(expected.atp_heads[layer][head][0], abs=1e-5)
    assert any("Pearson r" in m.value for m in app.markdown)


@pytest.mark.parametrize("case", COMPONENT_CASES, ids=lambda c: c.name)
def test_component_bad_input_gives_one_message_in_the_app(app, tiny_folders, case):
    open_page(app, a=case.a, b=case.b, model=str(tiny_folders["llama"]))
    kwargs = component_kwargs(case)
    if "answer" in kwargs:
        app.text_input(key="components-answer").input(kwargs["answer"].replace(" ", "␣"))
    if "wrong" in kwargs:
        app.text_input(key="components-wrong").input(kwargs["wrong"].replace(" ", "␣"))
    press(app, "components-run")
    if kwargs["per_position"]:  # the page offers position by position only for equal lengths
        assert app.toggle(key="components-per-position").proto.disabled
        return
    assert len(app.error) == 1 and case.refused in app.error[0].value


def test_the_page_is_offered_for_two_prompts_only(app, tiny_folders):
    compare_two(app, tiny_folders["gpt2"], tiny_folders["gpt2"])
    assert not app.exception, app.exception
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page(PAGE)
