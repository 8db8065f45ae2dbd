"""The Sets page, driven with AppTest on tiny models: pasted lists and a shipped example measured
as the library measures them, the layer slider without a new run, bad input as one message with
the inputs kept, a cancelled run, uploads (read_uploads)."""

from __future__ import annotations

import re

import pytest
from app_helpers import submit, table_with
from bad_input_cases import SETS_CASES

from lib.analyses.sets import measure_sets, prompt_sets
from lib.app import session, sets_view, ui
from lib.app.cache import ModelKey
from lib.core.errors import PromptError

A = ("You have happy emotion in yourself!", "The capital of France is", "the quick brown fox")
B = ("You have angry emotion in yourself!", "The capital of Italy is", "the lazy dog")


def open_sets(app, model: str):
    submit(app, model=model)
    app.switch_page("pages/sets.py").run()
    assert not app.exception, app.exception
    return app


def paste(app, a: str, b: str, paired: bool = True):
    app.radio(key="sets_source").set_value("paste").run()
    app.text_area(key="sets_a").input(a)
    app.text_area(key="sets_b").input(b)
    app.checkbox(key="sets_paired").set_value(paired)
    next(b for b in app.button if b.label == "Compare sets").click().run()
    assert not app.exception, app.exception
    return app


def test_pasted_sets_show_the_librarys_numbers(app, tiny_folders, tiny_models):
    loaded = tiny_models["llama"]
    open_sets(app, str(tiny_folders["llama"]))
    paste(app, "\n".join(A), "\n".join(B))
    assert not app.error
    expected = measure_sets(loaded, prompt_sets(A, B, paired=True))
    best = expected.at(expected.best_layer)
    assert app.info[0].value == best.summary
    layers = table_with(app, "probe accuracy")
    assert layers["probe accuracy"].tolist() == pytest.approx([s.probe.accuracy for s in best.layers])
    assert layers["cosine distance"].tolist() == pytest.approx([s.cosine.mean for s in best.layers])
    rows = table_with(app, "probe margin A")
    assert rows["a"].tolist() == list(A)
    assert rows["cosine distance"].tolist() == pytest.approx([p.cosine for p in best.pairs])
    assert len(app.get("vega_lite_chart")) == 3  # probe, distance, the answers' top-1 shares
    model = ui.get_model(ModelKey(str(tiny_folders["llama"])))
    passes = model.forward_passes
    app.slider(key=f"sets_layer_{loaded.n_layers}").set_value(0).run()
    assert table_with(app, "probe margin A")["cosine distance"].tolist() == pytest.approx(
        [p.cosine for p in expected.at(0).pairs])
    assert model.forward_passes == passes  # another layer: no new run


def test_the_lens_over_the_sets_can_be_left_out(app, tiny_folders, tiny_models):
    """Unticked, the lens over the sets is not run (the page says so, no lens table or chart); the
    statistics and each prompt's answer are the library's with lens=False."""
    loaded = tiny_models["llama"]
    open_sets(app, str(tiny_folders["llama"]))
    app.radio(key="sets_source").set_value("paste").run()
    app.text_area(key="sets_a").input("\n".join(A))
    app.text_area(key="sets_b").input("\n".join(B))
    app.checkbox(key="sets_paired").set_value(True)
    app.checkbox(key="sets_lens").set_value(False)
    next(b for b in app.button if b.label == "Compare sets").click().run()
    assert not app.exception, app.exception
    assert not app.error
    expected = measure_sets(loaded, prompt_sets(A, B, paired=True), lens=False).at()
    assert any("Left out for this run" in c.value for c in app.caption)
    assert len(app.get("vega_lite_chart")) == 2  # probe and distance only
    assert "A answer already top-1" not in table_with(app, "probe accuracy").columns
    rows = table_with(app, "probe margin A")
    assert rows["A's answer"].tolist() == [p.answer_a for p in expected.pairs]


def test_a_shipped_example(app, tiny_folders):
    open_sets(app, str(tiny_folders["gpt2"]))
    app.selectbox(key="sets_example").set_value("True vs false statements")
    next(b for b in app.button if b.label == "Compare sets").click().run()
    assert not app.exception and not app.error
    assert len(table_with(app, "probe margin A")) == 50


@pytest.mark.parametrize("case", SETS_CASES, ids=lambda c: c.name)
def test_bad_input_is_one_message_and_the_inputs_stay(app, tiny_folders, case):
    """Each case of the bad-input table (a CSV case as an upload: AppTest cannot upload) is one
    st.error naming the rows; what was typed stays in the text areas."""
    if case.b is None:
        with pytest.raises(PromptError, match=re.escape(case.refused)):
            sets_view.read_uploads(("table.csv", case.a.encode()), None, paired=True)
        return
    open_sets(app, str(tiny_folders["llama"]))
    paste(app, case.a, case.b, case.paired)
    assert len(app.error) == 1 and case.refused in app.error[0].value
    assert app.text_area(key="sets_a").value == case.a and app.text_area(key="sets_b").value == case.b


def test_a_cancelled_run_waits_for_run_it_again(app, tiny_folders):
    open_sets(app, str(tiny_folders["llama"]))
    paste(app, "\n".join(A), "\n".join(B), paired=False)
    assert not app.error
    key = (ModelKey(str(tiny_folders["llama"])), prompt_sets(A, B), -1, True)  # model, sets, position, lens
    app.session_state[sets_view.CANCELLED_KEY] = key
    app.run()
    assert "You cancelled" in app.error[0].value
    next(b for b in app.button if b.label == "Run it again").click().run()
    assert not app.error and app.info[0].value


def test_uploads():
    csv = ("pairs.csv", b"a,b\nx,y\np,q\n")
    assert sets_view.read_uploads(csv, None, paired=False) == prompt_sets(("x", "p"), ("y", "q"), paired=True)
    lists = ("a.txt", b"one\ntwo\n"), ("b.txt", b"three\nfour\nfive\n")
    assert sets_view.read_uploads(*lists, paired=False).b == ("three", "four", "five")
    not_utf8 = ("a.txt", b"\xff\xfe")
    for files, phrase in (((None, None), "Upload set A"), ((lists[0], None), "Upload set B too"),
                          ((csv, lists[1]), "holds both sets"), ((not_utf8, lists[1]), "not UTF-8")):
        with pytest.raises(PromptError, match=phrase):
            sets_view.read_uploads(*files, paired=False)


def test_save_keeps_the_comparison_in_history(app, tiny_folders, tiny_models):
    from lib.app.history import History

    open_sets(app, str(tiny_folders["llama"]))
    paste(app, "\n".join(A), "\n".join(B))
    app.text_input(key=next(t.key for t in app.text_input if t.label == "Name")).input("my sets")
    next(b for b in app.button if b.label == "💾 Save").click().run()
    assert not app.exception and "Saved as #" in app.success[0].value
    saved_id = int(app.success[0].value.split("#")[1].split(".")[0])
    saved = History().get(saved_id)
    assert saved.kind == "sets.SetComparison" and saved.value().sets.a == A
    assert (saved.settings["a"], saved.settings["b"]) == (A[0], B[0]) and saved.settings["sets"]["paired"]


def test_a_picked_pair_opens_on_every_page(app, tiny_folders):
    """A row picked in the pairs table (its selection state set as the browser would) gets a button
    that makes that pair the sidebar's comparison, for every page."""
    open_sets(app, str(tiny_folders["llama"]))
    paste(app, "\n".join(A), "\n".join(B))
    app.session_state["sets-rows"] = {"selection": {"rows": [1], "columns": [], "cells": []}}
    app.run()
    opened = next(b for b in app.button if b.label == "Open pair 2 on every page")
    opened.click().run()
    assert not app.exception
    request = app.session_state[session.REQUEST_KEY]
    assert (request.a, request.b) == (A[1], B[1]) and request.model == str(tiny_folders["llama"])
    assert app.sidebar.text_area(key="prompt_a").value == A[1]
