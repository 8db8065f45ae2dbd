"""Shareable URLs, example pairs and exports: the parts around the pages."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from app_helpers import submit

from lib.app import session, views
from lib.app.examples import EXAMPLES
from lib.app.request import QUERY_FIELDS, Request

SHARED = {
    "model": "default",
    "a": "The capital of France is",
    "b": "The capital of Italy is",
    "bos": "on",
    "k": "3",
}


def test_shareable_url_reproduces_the_request_and_page(app, real_model):
    app.query_params.update(SHARED)
    app.switch_page("pages/logit_lens.py").run()
    assert not app.exception, app.exception
    assert app.session_state[session.REQUEST_KEY] == Request(a=SHARED["a"], b=SHARED["b"], bos="on", k=3)
    assert app.sidebar.text_area(key="prompt_a").value == SHARED["a"]
    assert app.sidebar.selectbox(key="bos").value == "on"
    assert app.header[0].value == "Logit lens"
    tables = [df.value for df in app.dataframe if "climbed" in df.value.columns]
    assert [len(t) for t in tables] == [3, 3]


@pytest.mark.slow
def test_compare_writes_the_request_into_the_url(app, real_model):
    submit(app, a="One prompt", b="Another prompt", k=4)
    assert not app.exception
    assert {name: app.query_params[name] for name in QUERY_FIELDS} == {
        "model": "default", "a": "One prompt", "b": "Another prompt", "bos": "auto", "k": "4"
    }


def test_url_with_a_bad_setting_says_so_and_runs_nothing(app):
    app.query_params.update({**SHARED, "k": "lots"})
    app.run()
    assert not app.exception
    assert "k='lots'" in app.sidebar.error[0].value
    assert session.REQUEST_KEY not in app.session_state


@pytest.mark.slow
def test_example_button_fills_both_prompts_and_bos_and_compares(app, real_model):
    example = next(e for e in EXAMPLES if e.bos == "on")
    app.run()
    next(b for b in app.sidebar.button if b.label == example.name).click().run()
    assert not app.exception, app.exception
    assert app.sidebar.text_area(key="prompt_a").value == example.a
    assert app.sidebar.text_area(key="prompt_b").value == example.b
    assert app.sidebar.selectbox(key="bos").value == "on"
    assert app.session_state[session.REQUEST_KEY].a == example.a
    assert len([m for m in app.markdown if m.value.startswith("**Next token")]) == 2  # Compare drew it


def test_export_files_hold_the_request_the_data_and_each_table():
    request = Request(a="A, with a comma", b='B "quoted"')
    table = pd.DataFrame({"token": ["␣Paris", "a,b"], "prob": [0.5, 0.25]})
    files = views.export_files("view", request, {"value": 1}, {"top": table})
    stem = "view-a-with-a-comma-"
    assert [f.file_name[: len(stem)] for f in files] == [stem, stem]
    assert files[0].file_name.endswith(".json") and files[1].file_name.endswith("-top.csv")
    assert json.loads(files[0].content) == {"request": request.to_dict(), "value": 1}
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(files[1].content)), table)


@pytest.mark.slow
def test_a_link_carries_the_watched_words_and_the_lens_cell(app, real_model):
    app.query_params.update({**SHARED, "watch": "␣Paris\n␣Rome\n␣London"})
    app.switch_page("pages/watch.py").run()
    assert not app.exception, app.exception
    assert app.text_area[0].value == "␣Paris\n␣Rome\n␣London"
    assert app.query_params["watch"] == "␣Paris\n␣Rome\n␣London"  # still in the link to copy

    app.switch_page("pages/logit_lens.py").run()
    assert "watch" not in app.query_params  # another page's state leaves the link
    app.selectbox(key="lens_layer").set_value(12).run()
    assert app.query_params["lens_layer"] == "12"


def test_a_link_opens_the_lens_at_its_cell(app, real_model):
    app.query_params.update({**SHARED, "lens_layer": "7", "lens_offset": "1"})
    app.switch_page("pages/logit_lens.py").run()
    assert not app.exception, app.exception
    assert (app.selectbox(key="lens_layer").value, app.selectbox(key="lens_offset").value) == (7, 1)


@pytest.mark.slow
def test_typed_patching_tokens_and_their_grid_survive_a_page_switch(app, real_model):
    submit(app, a=SHARED["a"], b=SHARED["b"])
    app.switch_page("pages/patching.py").run()
    app.text_input(key="patching-answer").input("␣Paris")
    app.text_input(key="patching-wrong").input("␣Rome").run()
    app.button(key="patching-run").click().run()
    assert app.query_params["answer"] == "␣Paris"
    app.switch_page("pages/compare.py").run()
    app.switch_page("pages/patching.py").run()
    assert not app.exception, app.exception
    assert app.text_input(key="patching-answer").value == "␣Paris"
    assert app.text_input(key="patching-wrong").value == "␣Rome"
    assert any(t.value.startswith("Metric: logit[␣Paris] − logit[␣Rome]") for t in app.text)  # no new run


@pytest.mark.slow
def test_prompts_too_long_for_a_link_are_left_out_with_a_note(app, real_model):
    long = "word " * (session.MAX_LINK_CHARS // 8)  # two prompts: over the limit once encoded, no further
    submit(app, a=long + "A", b=long + "B")
    assert not app.exception, app.exception
    assert "a" not in app.query_params and "b" not in app.query_params
    assert app.query_params["model"] == "default"
    assert any("too long for a link" in c.value for c in app.sidebar.caption)


@pytest.mark.slow
def test_an_example_that_turns_bos_on_does_not_leave_it_on_for_the_next(app, real_model):
    with_bos = next(e for e in EXAMPLES if e.bos == "on")
    without = next(e for e in EXAMPLES if e.bos is None)
    app.run()
    next(b for b in app.sidebar.button if b.label == with_bos.name).click().run()
    assert app.session_state[session.REQUEST_KEY].bos == "on"
    next(b for b in app.sidebar.button if b.label == without.name).click().run()
    assert not app.exception, app.exception
    assert app.session_state[session.REQUEST_KEY].bos == "auto"
    assert app.sidebar.selectbox(key="bos").value == "auto"
