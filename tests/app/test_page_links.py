"""A copied link opens a page as it was left: the patching cell and score, the distances measure."""

from __future__ import annotations

import pytest
from app_helpers import open_page

SHARED = {"model": "default", "a": "The capital of France is", "b": "The capital of Italy is", "k": "3"}


def cell_picker(app, name: str):
    return next(s for s in app.selectbox if s.key and s.key.startswith(f"patching-{name}"))


@pytest.mark.slow
def test_the_chosen_patching_cell_goes_into_the_link(app, real_model):
    open_page(app, "pages/patching.py", a=SHARED["a"], b=SHARED["b"])
    app.button(key="patching-run").click().run()
    cell_picker(app, "layer").set_value(12).run()
    cell_picker(app, "position").set_value(2).run()
    assert not app.exception, app.exception
    assert (app.query_params["patch_layer"], app.query_params["patch_position"]) == ("12", "2")


def test_a_link_opens_the_patching_grid_at_its_cell(app, real_model):
    app.query_params.update({**SHARED, "answer": "␣Paris", "wrong": "␣Rome", "patch_layer": "12",
                             "patch_position": "2"})
    app.switch_page("pages/patching.py").run()
    assert not app.exception, app.exception
    assert (cell_picker(app, "layer").value, cell_picker(app, "position").value) == (12, 2)
    assert any(t.value.startswith("Metric: logit[␣Paris] − logit[␣Rome]") for t in app.text)  # grid drawn
    assert any("at layer 12, position 2 ('␣of')" in c.value for c in app.caption)


def test_a_link_with_a_cell_outside_the_grid_falls_back_to_the_default_cell(app, real_model):
    app.query_params.update({**SHARED, "patch_layer": "99", "patch_position": "-4"})
    app.switch_page("pages/patching.py").run()
    assert not app.exception, app.exception
    assert cell_picker(app, "layer").value == 0 and cell_picker(app, "position").value == 3  # France/Italy


@pytest.mark.slow
def test_the_distances_measure_goes_into_the_link(app, real_model):
    open_page(app, "pages/distances.py", a=SHARED["a"], b=SHARED["b"])
    assert "measure" not in app.query_params  # the default stays out of the link
    app.radio(key="dist_measure").set_value("relative L2").run()
    assert app.query_params["measure"] == "relative L2"


def test_a_link_opens_the_distances_heatmap_in_its_measure(app, real_model):
    app.query_params.update({**SHARED, "measure": "relative L2"})
    app.switch_page("pages/distances.py").run()
    assert not app.exception, app.exception
    assert app.radio(key="dist_measure").value == "relative L2"
    heatmap = app.get("vega_lite_chart")[-1]
    assert "relative L2" in heatmap.proto.spec and "cosine distance" not in heatmap.proto.spec
