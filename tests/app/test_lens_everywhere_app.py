"""The lens choice on every page that reads a lens (AppTest, a tiny Llama that ships a random
Jacobian lens in a stand-in lenses folder): Patching's "B after the patch" reads it, every page's
caption and downloads name it, and in two-models mode each model is read with its own lens — a model
without one (the tiny Llama with other weights) is read with the logit lens and the page says so in
one sentence."""

from __future__ import annotations

import json

import pytest
from app_helpers import submit

from lib.analyses.common import lenses
from lib.analyses.common.lens import lens_grid
from lib.analyses.patching import patched_lens_captures
from lib.app import views
from lib.core.capture import capture
from lib.core.models import load_model

A, B = "The capital of France is", "The capital of Italy is"
JACOBIAN = "Jacobian lens, fitted on 9 prompts"


@pytest.fixture
def exports(monkeypatch):
    """Every page's download buttons, as the files they would offer: {page name: {file name: text}}."""
    made: dict[str, dict[str, str]] = {}

    def record(name, request, data, tables):
        made[name] = {f.file_name.split("-", 1)[0] if f.file_name.endswith(".json") else f.label: f.content
                      for f in views.export_files(name, request, data, tables)}

    monkeypatch.setattr(views, "download_buttons", record)
    return made


def csv_lens(text: str) -> set[str]:
    import io

    import pandas as pd

    return set(pd.read_csv(io.StringIO(text))["lens"])


def json_of(files: dict[str, str]) -> dict:
    return json.loads(next(text for name, text in files.items() if not name.endswith("(CSV)")))


def choose(app, lens, model):
    app.run()
    app.sidebar.selectbox(key="lens").set_value(lens)
    return submit(app, a=A, b=B, model=model, k=3)


def run_patching(app):
    app.switch_page("pages/patching.py").run()
    app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    return app


def lens_table(app):
    return next(df.value for df in app.dataframe if "B patched" in df.value.columns)


def test_patching_reads_b_after_the_patch_with_the_chosen_lens(app, llama_with_lens, exports):
    loaded, folder = llama_with_lens
    choose(app, "jacobian", folder)
    run_patching(app)
    assert not app.error
    headings = [h.value for h in app.subheader if "after one patch" in h.value]
    assert headings == ["B's Jacobian lens after one patch"]
    layer, position = (s.value for s in app.selectbox if s.key and s.key.startswith("patching-"))
    want = patched_lens_captures(loaded, capture(loaded, A), capture(loaded, B), layer, position, top_k=3,
                                 lens="jacobian")
    plain = patched_lens_captures(loaded, capture(loaded, A), capture(loaded, B), layer, position, top_k=3)
    table = lens_table(app)
    assert table["B patched"].tolist() == [row[0].token for row in want.lens]
    assert table["p(B patched)"].tolist() == pytest.approx([row[0].prob for row in want.lens], abs=1e-6)
    assert [row[0].prob for row in want.lens] != [row[0].prob for row in plain.lens]  # the lens shows
    assert any(f"Read with: {JACOBIAN}." in c.value for c in app.caption)
    files = exports["patching"]
    data = json_of(files)
    assert data["lens_after_patch"]["lens_caption"] == JACOBIAN
    assert data["lens"]["B"]["provenance"] == JACOBIAN and data["lens"]["B"]["kind"] == "jacobian"
    assert csv_lens(files["lens-after-patch (CSV)"]) == {JACOBIAN}


@pytest.mark.parametrize(("page", "name", "tables"), [
    ("pages/compare.py", "comparison", ["lens_A (CSV)", "lens_B (CSV)"]),
    ("pages/logit_lens.py", "logit", ["grid (CSV)", "cell (CSV)"]),
    ("pages/diff.py", "top", ["layers (CSV)"]),
    ("pages/watch.py", "watch", ["per-layer (CSV)", "logit-difference (CSV)", "whole-words (CSV)"]),
])
def test_an_export_made_with_the_jacobian_lens_says_so(app, llama_with_lens, exports, page, name, tables):
    _, folder = llama_with_lens
    choose(app, "jacobian", folder)
    app.switch_page(page).run()
    assert not app.exception and not app.error
    assert any(JACOBIAN in c.value for c in app.caption)
    files = next(f for stem, f in exports.items() if stem.startswith(name))
    data = json_of(files)
    assert {use["provenance"] for use in data["lens"].values()} == {JACOBIAN}
    assert {use["source"] for use in data["lens"].values()} == {lenses.JACOBIAN_FILE}
    for table in tables:
        assert csv_lens(files[table]) == {JACOBIAN}, table


@pytest.mark.parametrize("page", ["pages/compare.py", "pages/logit_lens.py", "pages/diff.py",
                                  "pages/watch.py", "pages/patching.py"])
def test_one_model_without_the_chosen_lens_gets_one_sentence(app, llama_with_lens, tiny_folders, page):
    choose(app, "jacobian", str(tiny_folders["gpt2"]))
    app.switch_page(page).run()
    assert not app.exception
    [error] = app.error
    assert error.value.startswith("twinlens has no Jacobian lens for") and error.value.count(". ") == 0


def compare_models(app, model1, model2, lens="jacobian"):
    app.run()
    app.sidebar.radio(key="mode").set_value("models").run()
    app.sidebar.selectbox(key="lens").set_value(lens)
    app.sidebar.text_input(key="model").input(str(model1))
    app.sidebar.text_input(key="model2").input(str(model2))
    app.sidebar.text_area(key="prompt_a").input(A)
    app.sidebar.number_input(key="top_k").set_value(3)
    next(b for b in app.sidebar.button if b.label == "Compare").click()
    return app.run()


MISSING = "so model 2 is read with the logit lens."


def infos(app):
    return [i.value for i in app.info if "twinlens has no" in i.value]


@pytest.mark.parametrize("page", ["pages/compare.py", "pages/logit_lens.py", "pages/diff.py",
                                  "pages/patching.py"])
def test_two_models_each_read_with_their_own_lens(app, llama_with_lens, partner_folders, exports, page):
    loaded, folder = llama_with_lens
    partner_folder = partner_folders["llama-seed1"]
    partner = load_model(str(partner_folder))
    compare_models(app, folder, partner_folder)
    app.switch_page(page).run()
    if page == "pages/patching.py":
        app.text_input(key="patching-answer").input("␣Paris")
        app.text_input(key="patching-wrong").input("␣Rome")
        app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    assert not app.error, app.error[0].value
    [note] = infos(app)  # one sentence, once
    assert note == f"twinlens has no Jacobian lens for {partner.name}, {MISSING}"
    captions = " | ".join(c.value for c in app.caption)
    data = json_of(list(exports.values())[-1])  # the page's own (Compare, the opening page, is first)
    kinds = {side: use["kind"] for side, use in data["lens"].items()}
    if page == "pages/diff.py":  # KL and JS compare like with like: both through the logit lens
        assert "Both models are read with the logit lens here" in captions
        assert set(kinds.values()) == {"logit"}
        return
    first, second = sorted(kinds)
    assert (kinds[first], kinds[second]) == ("jacobian", "logit")
    if page == "pages/compare.py":
        assert f"model 1: {JACOBIAN}; model 2: logit lens" in captions
    if page == "pages/patching.py":
        assert f"B's model (B, B patched): logit lens; A's model (A): {JACOBIAN}" in captions
        assert "B's logit lens after one patch" in [h.value for h in app.subheader]  # model 2 has none
    if page == "pages/logit_lens.py":
        assert f"Read with: {JACOBIAN}" in captions and "Read with the logit lens" in captions
        for side, model, lens in (("model 1", loaded, "jacobian"), ("model 2", partner, None)):
            grid = data["grids"][side]
            cap = capture(model, A)
            want = lens_grid(model, cap, tuple(grid["positions"]), 3, *([lens] if lens else []))
            assert grid == want.to_dict(), side
