"""Two-models mode: one prompt through two tiny models, drawn on the Compare page as model 1 / model 2."""

from __future__ import annotations

import pytest
from app_helpers import ROOT, compare_two, lens_tables, next_tokens
from streamlit.testing.v1 import AppTest

from lib.analyses.model_compare import compare_models
from lib.app import session
from lib.app.request import PAIR_QUERY_FIELDS, QUERY_FIELDS, Request
from lib.core.errors import SettingsError
from lib.core.models import load_model

PROMPT = "The capital of France is"


def test_two_models_are_drawn_as_model_1_and_model_2(app, tiny_folders, partner_folders):
    compare_two(app, tiny_folders["llama"], partner_folders["llama-seed1"])
    assert not app.exception, app.exception
    assert not app.error
    assert app.sidebar.text_area(key="prompt_a").label == "Prompt"
    model1, model2 = load_model(str(tiny_folders["llama"])), load_model(str(partner_folders["llama-seed1"]))
    expected = compare_models(model1, model2, PROMPT, top_k=4)
    tokens = [expected.a.final[0].token, expected.b.final[0].token]
    assert next_tokens(app) == list(zip(["model 1", "model 2"], tokens, strict=True))
    for table, side in zip(lens_tables(app), (expected.a, expected.b), strict=True):
        assert table.loc["layer 0", "#1"] == f"{side.lens[0][0].token}  {side.lens[0][0].prob:.3f}"
    assert any("Distance between model 1 and model 2" in h.value for h in app.subheader)
    memory = " ".join(c.value for c in app.sidebar.caption)
    assert "In memory:" in memory and "llama-seed1" in memory and memory.count("MB") == 3  # two + total


def test_two_models_of_different_shapes_say_why_there_are_no_distances(app, tiny_folders, partner_folders):
    compare_two(app, tiny_folders["gpt2"], partner_folders["gpt2-shallow"])
    assert not app.exception, app.exception
    assert "No distances per layer" in app.info[0].value
    assert len(lens_tables(app)) == 2


def test_two_models_with_different_tokenizers_show_an_error(app, tiny_folders, partner_folders):
    compare_two(app, tiny_folders["gpt2"], partner_folders["gpt2-other-tokenizer"])
    assert not app.exception, app.exception
    assert "do not share a tokenizer" in app.error[0].value


def test_two_models_request_is_in_the_url_and_a_shared_url_reopens_it(app, tiny_folders, partner_folders):
    compare_two(app, tiny_folders["llama"], partner_folders["llama-seed1"], k=3)
    shared = {name: app.query_params[name] for name in (*QUERY_FIELDS, *PAIR_QUERY_FIELDS)}
    assert shared["mode"] == "models" and shared["model2"] == str(partner_folders["llama-seed1"])
    fresh = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)
    fresh.query_params.update(shared)
    fresh.run()
    assert not fresh.exception, fresh.exception
    model1, model2 = str(tiny_folders["llama"]), str(partner_folders["llama-seed1"])
    expected = Request(model=model1, model2=model2, mode="models", a=PROMPT, k=3)
    assert fresh.session_state[session.REQUEST_KEY] == expected
    assert [side for side, _ in next_tokens(fresh)] == ["model 1", "model 2"]


def test_back_to_two_prompts_drops_the_second_model_from_the_url(app, tiny_folders, partner_folders):
    compare_two(app, tiny_folders["llama"], partner_folders["llama-seed1"])
    app.sidebar.radio(key="mode").set_value("prompts").run()
    app.sidebar.text_area(key="prompt_b").input("The capital of Italy is")
    next(b for b in app.sidebar.button if b.label == "Compare").click().run()
    assert not app.exception, app.exception
    assert "mode" not in app.query_params and "model2" not in app.query_params
    assert [side for side, _ in next_tokens(app)] == ["A", "B"]


def test_link_with_an_unknown_mode_is_refused_naming_it():
    with pytest.raises(SettingsError, match="mode='three'"):
        Request.from_query({"mode": "three"})
