"""The Top-token diff page, driven with AppTest on the embedded model."""

from __future__ import annotations

import pytest
from app_helpers import open_page, table_with

from lib.analyses.diff import top_token_diff
from lib.app import ui
from lib.app.cache import ModelKey
from lib.core.capture import capture

A, B = "The capital of France is", "Claire and Mary went to the shops, then Mary gave a bottle of milk to"


def test_diff_tables_hold_what_top_token_diff_returns(app, real_model):
    open_page(app, "pages/diff.py", a=A, b=B, k=5)
    expected = top_token_diff(real_model, capture(real_model, A), capture(real_model, B), top_k=5)
    layers = table_with(app, "JS bits")
    assert layers["KL(A‖B) bits"].tolist() == pytest.approx([x.kl_bits for x in expected.layers], rel=1e-9)
    assert layers["JS bits"].tolist() == pytest.approx([x.js_bits for x in expected.layers], rel=1e-9)
    most_changed = [x.most_changed.token if x.most_changed else "" for x in expected.layers]
    assert layers["most changed"].tolist() == most_changed
    last = expected.layers[-1]
    detail = table_with(app, "Δp (B − A)")
    assert detail["token"].tolist() == [t.token for t in (*last.shared, *last.only_a, *last.only_b)]
    assert detail["Δp (B − A)"].tolist() == pytest.approx(
        [t.delta_prob for t in (*last.shared, *last.only_a, *last.only_b)], rel=1e-9
    )
    assert len(app.get("vega_lite_chart")) == 1


def test_diff_position_and_layer_pickers_run_no_forward_pass(app, real_model):
    cap_a, cap_b = capture(real_model, A), capture(real_model, B)
    layer = top_token_diff(real_model, cap_a, cap_b, position_b=3, top_k=5).layers[10]
    open_page(app, "pages/diff.py", a=A, b=B, k=5)
    model = ui.get_model(ModelKey())
    before = model.forward_passes
    app.selectbox(key=f"diff-position-B-{cap_b.n_tokens}").set_value(3).run()
    app.select_slider[0].set_value(10).run()
    assert not app.exception, app.exception
    detail = table_with(app, "Δp (B − A)")
    assert detail["token"].tolist() == [t.token for t in (*layer.shared, *layer.only_a, *layer.only_b)]
    assert model.forward_passes == before
