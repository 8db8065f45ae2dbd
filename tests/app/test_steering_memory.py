"""The Steering page keeps its work (issue 24 item 1): a steer result survives the sweep and a
visit to another page; layer, α, vector and target travel in the link; the sweep's best cell is
one click away and is the smallest push that reaches A."""

from __future__ import annotations

from app_helpers import app, submit  # noqa: F401  (fixture)

A, B = "The capital of France is", "The capital of Italy is"


def outcomes(at):
    return [df.value for df in at.dataframe if "KL vs unsteered (bits)" in df.value.columns]


def open_steering(at, folder: str):
    submit(at, a=A, b=B, model=folder)
    at.switch_page("pages/steering.py").run()
    assert not at.exception, at.exception


def test_steer_result_survives_the_sweep_and_another_page(app, tiny_folders):  # noqa: F811
    open_steering(app, str(tiny_folders["llama"]))
    app.selectbox(key="steering-layer").set_value(2)
    app.number_input(key="steering-alpha").set_value(1.5)
    app.number_input(key="steering-n").set_value(3)
    app.button(key="steering-run").click().run()
    assert not app.exception, app.exception
    [before] = outcomes(app)
    assert app.query_params["steer_layer"] == "2" and app.query_params["steer_alpha"] == "1.5"
    app.button(key="steering-sweep-run").click().run()
    assert not app.exception, app.exception
    [after] = outcomes(app)  # the steer result is still there after the sweep
    assert after.equals(before)
    app.switch_page("pages/compare.py").run()
    app.switch_page("pages/steering.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="steering-layer").value == 2
    assert app.number_input(key="steering-alpha").value == 1.5
    assert len(outcomes(app)) == 1  # and after leaving the page and coming back
    assert any("random KL (bits)" in df.value.columns for df in app.dataframe)  # the sweep too


def test_steer_there_steers_at_the_sweeps_best_cell(app, tiny_folders):  # noqa: F811
    open_steering(app, str(tiny_folders["llama"]))
    app.number_input(key="steering-n").set_value(2)
    app.text_input(key="steering-alphas").input("0.5, 1, 2").run()
    app.button(key="steering-sweep-run").click().run()
    assert not app.exception, app.exception
    [button] = [b for b in app.button if b.key == "steering-best"]
    layer, alpha = button.label.removeprefix("Steer there: layer ").split(", α = ")
    button.click().run()
    assert not app.exception, app.exception
    assert app.selectbox(key="steering-layer").value == int(layer)
    assert app.number_input(key="steering-alpha").value == float(alpha)
    [table] = outcomes(app)
    assert table["α"].iloc[1] == float(alpha)


def test_a_link_opens_steering_with_its_layer_alpha_and_target(app, tiny_folders):  # noqa: F811
    app.query_params.update({"model": str(tiny_folders["llama"]), "a": A, "b": B, "steer_layer": "1",
                             "steer_alpha": "0.75", "steer_mode": "mean", "steer_target": "Hello there"})
    app.run()
    app.switch_page("pages/steering.py").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="steering-layer").value == 1
    assert app.number_input(key="steering-alpha").value == 0.75
    assert app.selectbox(key="steering-mode").value == "mean"
    assert app.radio(key="steering-target").value == "a third prompt"
    assert app.text_area(key="steering-third").value == "Hello there"


def test_a_link_with_a_feature_as_the_vector_source_steers_with_it(app, real_model):  # noqa: F811
    app.query_params.update({"a": A, "b": B, "steer_layer": "15", "steer_alpha": "3",
                             "steer_vector": "feature:5"})
    app.switch_page("pages/steering.py").run()
    assert not app.exception, app.exception
    assert any("Steering with SAE feature 5" in i.value for i in app.info)
    assert app.selectbox(key="steering-layer").value == 15
    assert app.number_input(key="steering-alpha").value == 3
    assert app.query_params["steer_vector"] == "feature:5"
    app.button(key="steering-feature-clear").click().run()  # back to A − B: the link says so too
    assert "steer_vector" not in app.query_params
