"""Page state that belongs to a pair is reset when the pair changes (issue 24): Patching's answer
and wrong words typed for France/Italy are gone once an example (Kobe Bryant) is clicked, in the
widgets and in the link; a Compare of the same pair (another top-k) keeps them."""

from __future__ import annotations

from app_helpers import open_page, submit

from lib.app.examples import EXAMPLES

A, B = "The capital of France is", "The capital of Italy is"


def test_patching_words_reset_when_an_example_changes_the_pair(app, tiny_folders):
    open_page(app, "pages/patching.py", model=str(tiny_folders["llama"]), a=A, b=B)
    app.text_input(key="patching-answer").input("␣Paris")
    app.text_input(key="patching-wrong").input("␣Rome").run()
    assert app.query_params["answer"] == "␣Paris"

    submit(app, k=3)  # the same pair: the words stay
    assert app.text_input(key="patching-answer").value == "␣Paris"
    assert app.text_input(key="patching-wrong").value == "␣Rome"

    kobe = next(e for e in EXAMPLES if e.name.startswith("Kobe"))
    next(b for b in app.sidebar.button if b.label == kobe.name).click().run()
    assert not app.exception, app.exception
    assert app.text_input(key="patching-answer").value == ""
    assert app.text_input(key="patching-wrong").value == ""
    assert "answer" not in app.query_params and "wrong" not in app.query_params


def test_the_words_stay_reset_after_a_visit_to_another_page(app, tiny_folders):
    open_page(app, "pages/patching.py", model=str(tiny_folders["llama"]), a=A, b=B)
    app.text_input(key="patching-answer").input("␣Paris").run()
    app.switch_page("pages/compare.py").run()
    submit(app, b="The capital of Spain is")
    app.switch_page("pages/patching.py").run()
    assert not app.exception, app.exception
    assert app.text_input(key="patching-answer").value == ""  # not brought back from before the change
