"""Jargon a non-coder meets gets a plain word or a (?) sentence (issue 24): BOS, top-k, NDIF,
d_model, Q4_1, relative L2, attention sink, FVU, hook_resid_pre, density; raw-text mode never
mentions a template."""

from __future__ import annotations

import pytest
from app_helpers import open_page, submit

from lib.app import glossary


def help_of(element) -> str:
    return element.proto.help


def test_sidebar_settings_say_what_bos_top_k_and_ndif_are(app):
    app.run()
    bos, top_k = app.sidebar.selectbox(key="bos"), app.sidebar.number_input(key="top_k")
    assert bos.label == "Start token (BOS)" and "beginning of sequence" in help_of(bos)
    assert top_k.label == "Words per list" and "most likely next words" in help_of(top_k)
    assert "National Deep Inference Fabric" in help_of(app.sidebar.radio(key="backend"))


@pytest.mark.slow
def test_the_model_line_names_width_and_explains_q4_1(app, real_model):
    submit(app, a="The capital of France is", b="The capital of Italy is")
    line = next(c for c in app.caption if "layers ·" in c.value)
    assert "d_model" not in line.value and "· width 576 ·" in line.value
    assert "Q4_1" in line.value and help_of(line) == glossary.MODEL_CAPTION
    assert "4 bits" in help_of(line) and "d_model" in help_of(line)


def test_distances_explain_the_measures_and_the_attention_sink(app, tiny_folders):
    open_page(app, "pages/distances.py", model=str(tiny_folders["llama"]),
              a="The capital of France is", b="The capital of Italy is")
    assert "parks attention" in help_of(app.toggle(key="dist_drop_first"))
    assert "Relative L2:" in help_of(app.radio(key="dist_measure"))


def test_raw_text_continuations_never_mention_a_template(app, tiny_folders):
    open_page(app, "pages/continuations.py", model=str(tiny_folders["llama"]),
              a="The capital of France is", b="The capital of Italy is")
    app.number_input(key="continuations-n").set_value(3).run()
    app.button(key="continuations-run").click().run()
    assert not app.exception, app.exception
    shown = [c.value for c in app.caption] + [m.value for m in app.markdown]
    assert [c for c in app.caption if "prompt tokens" in c.value]
    assert not [text for text in shown if "template" in text]


@pytest.mark.slow
def test_features_caption_explains_fvu_and_the_hook_name(app, real_model):
    open_page(app, "pages/features.py", a="The capital of France is", b="The capital of Italy is")
    line = next(c for c in app.caption if "FVU" in c.value)
    assert "hook\\_resid\\_pre" in line.value  # escaped for Markdown
    assert "fraction of variance unexplained" in help_of(line) and "hook_resid_pre" in help_of(line)
