"""The Residual distances page, driven with AppTest on the embedded model."""

from __future__ import annotations

import pytest
from app_helpers import open_page as open_view
from app_helpers import table_with

from lib.analyses.common.distances import distance_report, layer_distances
from lib.app import ui
from lib.app.cache import ModelKey
from lib.core.capture import capture

A, B = "You have happy emotion in yourself!", "You have angry emotion in yourself!"


def open_page(app, **request):
    open_view(app, "pages/distances.py", **request)
    assert not app.error


def layer_table(app):
    return table_with(app, "cosine distance, last token")


def test_distances_table_holds_what_layer_distances_returns(app, real_model):
    open_page(app, a=A, b=B)
    table = layer_table(app)
    expected = layer_distances(capture(real_model, A).residual, capture(real_model, B).residual, "last")
    assert table["cosine distance, last token"].tolist() == pytest.approx(expected.cosine, abs=1e-9)
    assert table["relative L2, last token"].tolist() == pytest.approx(expected.relative_l2, abs=1e-9)
    assert len(app.get("vega_lite_chart")) == 3  # two per-layer charts and the position heatmap


def test_distances_first_position_toggle_changes_the_mean_and_runs_no_forward_pass(app, real_model):
    open_page(app, a=A, b=B, bos="off")
    cap_a, cap_b = capture(real_model, A, "off"), capture(real_model, B, "off")
    column = "cosine distance, mean of per-position distances"
    model = ui.get_model(ModelKey())
    before = model.forward_passes
    assert app.toggle(key="dist_drop_first").value is True  # on by default, with no BOS too
    for drop_first in (True, False):
        app.toggle(key="dist_drop_first").set_value(drop_first).run()
        expected = distance_report(cap_a.residual, cap_b.residual, drop_first=drop_first)
        assert layer_table(app)[column].tolist() == pytest.approx(expected.mean.cosine, abs=1e-9)
        assert app.info[0].value == expected.summary()
    assert model.forward_passes == before


@pytest.mark.slow
def test_distances_says_why_there_is_no_heatmap_for_prompts_of_different_lengths(app, real_model):
    open_page(app, a="The capital of France is", b="The capital of the United Kingdom is")
    assert any("same number of tokens" in i.value for i in app.info)
    assert len(app.get("vega_lite_chart")) == 2
