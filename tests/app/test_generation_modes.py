"""Continuations and Steering in two-models mode (one prompt through model 1 and model 2), and on a
backend that cannot generate yet."""

from __future__ import annotations

import pytest
from app_helpers import compare_two, submit

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.generation import continue_capture
from lib.analyses.steering import steer_captures
from lib.app import session
from lib.core.capture import capture
from lib.core.errors import TwinlensError
from lib.core.models import load_model

A, B = "The capital of France is", "The capital of Italy is"


def open_two(app, page: str, folder1, folder2):
    compare_two(app, folder1, folder2, A)
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def outcome_tables(app):
    return [df.value for df in app.dataframe if "KL vs unsteered (bits)" in df.value.columns]


def test_continuations_side_by_side_per_model(app, tiny_folders, partner_folders):
    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    open_two(app, "pages/continuations.py", folder1, folder2)
    app.number_input(key="continuations-n").set_value(5).run()
    app.button(key="continuations-run").click().run()
    assert not app.exception, app.exception
    assert not app.error
    assert [h.value for h in app.subheader][:2] == [f"Model 1 · {folder1}", f"Model 2 · {folder2}"]
    shown = [t.value for t in app.text]
    texts = []
    for folder in (folder1, folder2):
        loaded = load_model(str(folder))
        texts.append(continue_capture(loaded, capture(loaded, A), GenerationSettings(5)).text)
        assert texts[-1] in shown
    assert texts[0] != texts[1]  # other weights, another continuation


def test_steering_steers_each_model_with_its_own_vector(app, tiny_folders, partner_folders):
    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    open_two(app, "pages/steering.py", folder1, folder2)
    assert app.text_area(key="steering-b").value == "The capital of Italy is"  # the sidebar's B, kept
    app.text_area(key="steering-b").input("I hate the capital of Italy")
    app.number_input(key="steering-alpha").set_value(4.0)
    app.number_input(key="steering-n").set_value(4)
    app.selectbox(key="steering-layer").set_value(2)
    app.button(key="steering-run").click().run()
    assert not app.exception, app.exception
    assert not app.error
    assert [h.value for h in app.subheader][:2] == [f"Model 1 · {folder1}", f"Model 2 · {folder2}"]
    tables = outcome_tables(app)
    assert len(tables) == 2
    for table, folder in zip(tables, (folder1, folder2), strict=True):
        loaded = load_model(str(folder))
        expected = steer_captures(loaded, capture(loaded, A), capture(loaded, "I hate the capital of Italy"),
                                  layer=2, alpha=4.0, settings=GenerationSettings(4))
        assert list(table["continuation"]) == [o.continuation.text for o in expected.outcomes]
        kls = [o.kl for o in expected.outcomes]
        assert table["KL vs unsteered (bits)"].tolist() == pytest.approx(kls, abs=1e-6)
    assert tables[0]["KL vs unsteered (bits)"].iloc[1] != tables[1]["KL vs unsteered (bits)"].iloc[1]
    app.button(key="steering-sweep-run").click().run()
    assert not app.exception, app.exception
    sweeps = [df.value for df in app.dataframe if "random KL (bits)" in df.value.columns]
    assert len(sweeps) == 2 and all(len(s) == (3 + 1) * 4 for s in sweeps)


def test_steering_two_models_needs_a_second_prompt(app, tiny_folders, partner_folders):
    open_two(app, "pages/steering.py", tiny_folders["llama"], partner_folders["llama-seed1"])
    app.text_area(key="steering-b").input("  ").run()
    assert not app.exception, app.exception
    assert "Prompt B is empty" in app.error[0].value
    assert not outcome_tables(app)


def test_continuations_and_steering_on_the_nnsight_backend(app, tiny_folders):
    """On a backend without generate (nnsight today) both pages give one plain message and keep the
    session; once it offers generate, the continuation is the local backend's."""
    folder = str(tiny_folders["gpt2"])
    app.run()
    app.sidebar.radio(key="backend").set_value("nnsight")
    submit(app, a=A, b=B, model=folder)
    traced = load_model(folder, backend="nnsight")
    refusal = None
    try:
        continue_capture(traced, capture(traced, A), GenerationSettings(3))
    except TwinlensError as exc:
        refusal = str(exc)
    app.switch_page("pages/continuations.py").run()
    app.number_input(key="continuations-n").set_value(3).run()
    app.button(key="continuations-run").click().run()
    assert not app.exception, app.exception
    if refusal is None:
        local = load_model(folder)
        expected = continue_capture(local, capture(local, A), GenerationSettings(3))
        assert expected.text in [t.value for t in app.text]
        return
    assert [e.value.replace("\\", "") for e in app.error] == [refusal]
    app.switch_page("pages/steering.py").run()
    app.number_input(key="steering-n").set_value(3)
    app.button(key="steering-run").click().run()
    assert not app.exception, app.exception
    assert app.error[0].value.replace("\\", "") == refusal
    assert app.session_state[session.REQUEST_KEY].backend == "nnsight"
