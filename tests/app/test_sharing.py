"""Shareable URLs, example pairs and exports: the parts around the pages."""

from __future__ import annotations

import io
import json

import pandas as pd
from app_helpers import submit

from lib.app import ui
from lib.app.examples import EXAMPLES
from lib.app.request import QUERY_FIELDS, Request

SHARED = {
    "model": "default",
    "a": "The capital of France is",
    "b": "The capital of Italy is",
    "bos": "on",
    "k": "3",
}


def test_shareable_url_reproduces_the_request_and_page(app):
    app.query_params.update(SHARED)
    app.switch_page("pages/logit_lens.py").run()
    assert not app.exception, app.exception
    assert app.session_state[ui.REQUEST_KEY] == Request(a=SHARED["a"], b=SHARED["b"], bos="on", k=3)
    assert app.sidebar.text_area(key="prompt_a").value == SHARED["a"]
    assert app.sidebar.selectbox(key="bos").value == "on"
    assert app.header[0].value == "Logit lens"
    tables = [df.value for df in app.dataframe if "climbed" in df.value.columns]
    assert [len(t) for t in tables] == [3, 3]


def test_compare_writes_the_request_into_the_url(app):
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
    assert ui.REQUEST_KEY not in app.session_state


def test_example_button_fills_both_prompts_and_bos_and_compares(app):
    example = next(e for e in EXAMPLES if e.bos == "on")
    app.run()
    next(b for b in app.sidebar.button if b.label == example.name).click().run()
    assert not app.exception, app.exception
    assert app.sidebar.text_area(key="prompt_a").value == example.a
    assert app.sidebar.text_area(key="prompt_b").value == example.b
    assert app.sidebar.selectbox(key="bos").value == "on"
    assert app.session_state[ui.REQUEST_KEY].a == example.a
    assert len(app.metric) == 2  # the Compare page drew the comparison


def test_export_files_hold_the_request_the_data_and_each_table():
    request = Request(a="A, with a comma", b='B "quoted"')
    table = pd.DataFrame({"token": ["␣Paris", "a,b"], "prob": [0.5, 0.25]})
    files = ui.export_files("view", request, {"value": 1}, {"top": table})
    stem = "view-a-with-a-comma-"
    assert [f.file_name[: len(stem)] for f in files] == [stem, stem]
    assert files[0].file_name.endswith(".json") and files[1].file_name.endswith("-top.csv")
    assert json.loads(files[0].content) == {"request": request.to_dict(), "value": 1}
    pd.testing.assert_frame_equal(pd.read_csv(io.StringIO(files[1].content)), table)
