"""Continuations keeps what did not change (issue 24): its settings survive a visit to another page,
and its results stay on screen after a Compare whose prompts are the same (another top-k, say);
new prompts ask for Generate again."""

from __future__ import annotations

from app_helpers import submit

from lib.analyses.generation import GenerationSettings, continue_capture
from lib.core.capture import capture
from lib.core.models import load_model

A, B = "The capital of France is", "The capital of Italy is"


def asks_for_generate(app) -> bool:
    return any("Press **Generate**" in i.value for i in app.info)


def test_results_and_settings_survive_a_compare_that_changed_nothing_they_depend_on(app, tiny_folders):
    folder = str(tiny_folders["llama"])
    submit(app, model=folder, a=A, b=B, k=5)
    app.switch_page("pages/continuations.py").run()
    app.number_input(key="continuations-n").set_value(5).run()
    assert asks_for_generate(app)
    app.button(key="continuations-run").click().run()
    assert not app.exception, app.exception
    loaded = load_model(folder)
    expected = [continue_capture(loaded, capture(loaded, p), GenerationSettings(5)).text for p in (A, B)]
    assert all(text in [t.value for t in app.text] for text in expected)

    app.switch_page("pages/compare.py").run()
    submit(app, k=3)  # the same prompts, another top-k
    app.switch_page("pages/continuations.py").run()
    assert not app.exception, app.exception
    assert app.number_input(key="continuations-n").value == 5
    assert not asks_for_generate(app)
    assert all(text in [t.value for t in app.text] for text in expected)

    submit(app, b="The capital of Spain is")
    assert asks_for_generate(app)
