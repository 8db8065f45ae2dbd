"""The sidebar's Lens on the Compare and Logit lens pages (AppTest, a tiny Llama that ships a
Jacobian lens in a stand-in lenses folder): the chosen lens reads the grids and tables, the page
says which, the disagreement view lists where the logit and Jacobian lenses differ, and a model
without that lens gets one sentence."""

from __future__ import annotations

import pytest
from app_helpers import submit

from lib.analyses.common.lens import lens_grid
from lib.core.capture import capture

A, B = "The capital of France is Paris. The capital of", "The capital of Italy is Rome. The capital of"


def choose(app, lens, model):
    app.run()
    app.sidebar.selectbox(key="lens").set_value(lens)
    return submit(app, a=A, b=B, model=model, k=3)


def test_logit_lens_page_reads_with_the_chosen_lens_and_shows_where_lenses_differ(app, llama_with_lens):
    loaded, folder = llama_with_lens
    choose(app, "jacobian", folder)
    assert app.query_params.get("lens") in ("jacobian", ["jacobian"])
    captions = [c.value for c in app.caption]
    assert any("Read with: Jacobian lens, fitted on 9 prompts" in c for c in captions)  # Compare's table
    app.switch_page("pages/logit_lens.py").run()
    assert not app.exception and not app.error
    assert any(c.value.startswith("Read with: Jacobian lens, fitted on 9 prompts") for c in app.caption)
    cap = capture(loaded, A)
    window = tuple(range(max(0, cap.n_tokens - 16), cap.n_tokens))
    plain, jacobian = lens_grid(loaded, cap, window, 3), lens_grid(loaded, cap, window, 3, "jacobian")
    tables = [df.value for df in app.dataframe if "differ" in df.value.columns]
    assert len(tables) == 2  # A and B
    expected = [sum(x.top[0].id != y.top[0].id for x, y in zip(r1, r2, strict=True))
                for r1, r2 in zip(plain.cells, jacobian.cells, strict=True)]
    assert tables[0]["differ"].tolist() == expected[::-1] and sum(expected) > 0


def test_a_model_without_the_chosen_lens_is_told_so(app, llama_with_lens, tiny_folders):
    choose(app, "tuned", str(tiny_folders["gpt2"]))
    errors = [e.value for e in app.error]
    assert errors and errors[0].startswith("twinlens has no tuned lens for") and "\n" not in errors[0]


@pytest.mark.parametrize("page", ["pages/watch.py", "pages/diff.py"])
def test_watch_and_diff_pages_read_with_the_chosen_lens(app, llama_with_lens, page):
    loaded, folder = llama_with_lens
    choose(app, "jacobian", folder)
    app.switch_page(page).run()
    assert not app.exception and not app.error
    assert any(c.value.startswith("Read with: Jacobian lens, fitted on 9 prompts") for c in app.caption)
