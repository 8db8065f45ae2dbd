"""Two-models mode on the Top-token diff and Logit lens pages: one prompt, model 1 and model 2."""

from __future__ import annotations

import pytest
from app_helpers import compare_two, table_with

from lib.analyses.common.lens import cell_detail
from lib.analyses.diff import top_token_diff
from lib.core.capture import capture
from lib.core.models import load_model

PROMPT = "The capital of France is"


def open_pair_page(app, page: str, model1, model2, k: int = 4):
    compare_two(app, model1, model2, PROMPT, k)
    app.switch_page(page).run()
    assert not app.exception, app.exception
    return app


def test_diff_page_compares_model_1_with_model_2(app, tiny_folders, partner_folders):
    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    open_pair_page(app, "pages/diff.py", folder1, folder2)
    assert not app.error
    model1, model2 = load_model(str(folder1)), load_model(str(folder2))
    expected = top_token_diff(
        model1, capture(model1, PROMPT), capture(model2, PROMPT), top_k=4, loaded_b=model2
    )
    layers = table_with(app, "KL(model 1‖model 2) bits")
    assert layers["KL(model 1‖model 2) bits"].tolist() == pytest.approx([x.kl_bits for x in expected.layers])
    assert layers["JS bits"].tolist() == pytest.approx([x.js_bits for x in expected.layers])
    assert layers["model 2 top-1"].tolist() == [x.top_b[0].token for x in expected.layers]
    last = expected.layers[-1]
    detail = table_with(app, "Δp (model 2 − model 1)")
    assert detail["token"].tolist() == [t.token for t in (*last.shared, *last.only_a, *last.only_b)]
    assert [s.label for s in app.main.selectbox] == ["Position in the prompt"]  # one prompt, one position


def test_diff_page_refuses_two_models_of_different_depths(app, tiny_folders, partner_folders):
    open_pair_page(app, "pages/diff.py", tiny_folders["gpt2"], partner_folders["gpt2-shallow"])
    assert "layer by layer" in app.error[0].value
    assert not app.dataframe


def cell_tables(app):
    return [df.value for df in app.dataframe if "climbed" in df.value.columns]


def test_logit_lens_page_reads_each_model_through_its_own_lens(app, tiny_folders, partner_folders):
    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    open_pair_page(app, "pages/logit_lens.py", folder1, folder2)
    assert not app.error
    assert [h.value for h in app.subheader][:2] == [f"Model 1 · {folder1}", f"Model 2 · {folder2}"]
    assert len(app.get("vega_lite_chart")) == 2
    tables = cell_tables(app)
    assert len(tables) == 2
    for table, folder in zip(tables, (folder1, folder2), strict=True):
        model = load_model(str(folder))
        cap = capture(model, PROMPT)
        expected = cell_detail(model, cap, model.n_layers, cap.n_tokens - 1, 4)
        assert table["token"].tolist() == [t.token for t in expected.top]
        assert table["prob"].tolist() == pytest.approx([t.prob for t in expected.top], rel=1e-5)
    assert tables[0]["token"].tolist() != tables[1]["token"].tolist()  # other weights, other lens


def test_logit_lens_page_says_which_model_lacks_a_picked_layer(app, tiny_folders, partner_folders):
    open_pair_page(app, "pages/logit_lens.py", tiny_folders["gpt2"], partner_folders["gpt2-shallow"])
    assert app.selectbox(key="lens_layer").options == ["3", "2", "1", "0"]  # the deeper model's layers
    assert len(cell_tables(app)) == 1
    assert "model 2: has layers 0…2 only." in [t.value for t in app.text]
    app.selectbox(key="lens_layer").set_value(2).run()
    assert not app.exception, app.exception
    assert len(cell_tables(app)) == 2


def test_distances_page_compares_model_1_with_model_2_on_one_prompt(app, tiny_folders, partner_folders):
    from lib.analyses.common.distances import capture_distances

    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    open_pair_page(app, "pages/distances.py", folder1, folder2)
    assert not app.error
    model1, model2 = load_model(str(folder1)), load_model(str(folder2))
    expected = capture_distances(model1, capture(model1, PROMPT), capture(model2, PROMPT))
    assert expected.summary() in [i.value for i in app.info]
    assert expected.last.cosine[-1] > 0  # other weights: the two streams part ways


def test_distances_and_patching_refuse_two_models_of_different_depths(app, tiny_folders, partner_folders):
    open_pair_page(app, "pages/distances.py", tiny_folders["gpt2"], partner_folders["gpt2-shallow"])
    assert any("layer by layer" in e.value for e in app.error)


def test_patching_page_writes_model_1_into_model_2(app, tiny_folders, partner_folders):
    from lib.analyses.patching import patch_captures

    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    open_pair_page(app, "pages/patching.py", folder1, folder2)
    model1, model2 = load_model(str(folder1)), load_model(str(folder2))
    cap1, cap2 = capture(model1, PROMPT), capture(model2, PROMPT)
    moved = cap1.final_logits - cap2.final_logits
    answer, wrong = int(moved.argmax()), int(moved.argmin())
    app.text_input(key="patching-answer").input(model1.tokenizer.decode([answer]))
    app.text_input(key="patching-wrong").input(model1.tokenizer.decode([wrong]))
    app.button(key="patching-run").click().run()
    assert not app.exception, app.exception
    expected = patch_captures(model2, cap1, cap2, answer=answer, wrong=wrong)
    grid = next(df.value for df in app.dataframe if " · " in str(df.value.columns[-1]))
    shown = grid.iloc[:, 1:].to_numpy(dtype=float)
    assert shown.shape == (model2.n_layers + 1, len(cap2.token_ids))
    assert shown.flatten().tolist() == pytest.approx([e for row in expected.effect for e in row], abs=1e-3)
