"""The Findings page (AppTest): six findings in order for France/Italy on the embedded model, each
with its link, the report's download buttons; the numbers are the ones the pages behind it show."""

from __future__ import annotations

import pytest
from app_helpers import app, submit  # noqa: F401  (fixture)

from lib.app.findings import STEPS, TITLES


@pytest.mark.slow
def test_findings_page_shows_six_findings_and_the_report(app, real_model):  # noqa: F811
    submit(app, a="The capital of France is", b="The capital of Italy is")
    app.switch_page("pages/findings.py").run()
    assert not app.exception, app.exception
    text = " ".join(m.value for m in app.main.markdown)
    titles = [t for t in (TITLES[s] for s in STEPS) if f"**{t}**" in text]
    assert titles == [TITLES[s] for s in STEPS]
    assert "L23 H4" in text and "93%" in text  # who writes it: DLA with its exact patching
    assert "layer 24" in text  # the difference reaches the last position at layer 24
    assert "patching?" in text and "patch_layer=24" in text
    assert "steering?" in text and "steer_layer=" in text and "steer_alpha=" in text
    labels = [b.label for b in app.main.get("download_button")]
    assert "⬇ Download report (HTML)" in labels and "⬇ Report data (JSON)" in labels
    next(b for b in app.main.button if "Save" in b.label).click().run()  # the History keeps the findings
    assert not app.exception, app.exception
    saved = next(s.value for s in app.success if "Saved as #" in s.value)
    saved_id = int(saved.split("#")[1].split(".")[0])
    from lib.app.history import History

    entry = History().get(saved_id)
    assert entry.kind == "findings.Findings" and [f.step for f in entry.value().findings] == list(STEPS)


def _findings(app) -> dict[str, str]:  # noqa: F811
    """Each step's title → its sentence (the markdown drawn right after the title)."""
    texts = [m.value for m in app.main.markdown]
    return {step: texts[texts.index(f"**{TITLES[step]}**") + 1] for step in STEPS}


def test_two_models_patch_model_1_into_model_2_and_the_other_steps_say_why(app, tiny_folders,  # noqa: F811
                                                                           partner_folders):
    """Same depth and width: what carries the difference is the Patching page's two-models grid
    (model 1's residual written into model 2); the steps that compare two prompts in one model
    each say why they do not run."""
    from app_helpers import compare_two

    from lib.analyses.patching import patch_captures, reading
    from lib.app import views
    from lib.app.findings import TWO_MODELS, contrast_tokens
    from lib.core.capture import capture
    from lib.core.models import load_model

    folder1, folder2 = tiny_folders["llama"], partner_folders["llama-seed1"]
    compare_two(app, folder1, folder2, "The capital of France is")
    app.switch_page("pages/findings.py").run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    found = _findings(app)
    model1, model2 = load_model(str(folder1)), load_model(str(folder2))
    cap1, cap2 = capture(model1, "The capital of France is"), capture(model2, "The capital of France is")
    contrast = contrast_tokens(model1, cap1, cap2, ("Model 1", "Model 2"))
    grid = patch_captures(model2, cap1, cap2, answer=contrast.answer, wrong=contrast.wrong, model_a=model1)
    assert views.plain(reading(grid)) in found["carries"] and f"A {grid.metric_a:.2f}" in found["carries"]
    for step in ("writes", "concepts", "flip"):
        assert found[step] == views.plain("⛔ This step could not run: " + TWO_MODELS[step])


def test_two_models_of_different_depths_say_so_in_the_patching_step(app, tiny_folders,  # noqa: F811
                                                                    partner_folders):
    from app_helpers import compare_two

    compare_two(app, tiny_folders["gpt2"], partner_folders["gpt2-shallow"])
    app.switch_page("pages/findings.py").run()
    assert not app.exception
    found = _findings(app)
    assert "have 3 and 2 layers" in found["carries"] and found["carries"].startswith("⛔")


def test_findings_opened_by_a_link_leave_the_pages_behind_nothing_to_compute(app, tiny_folders):  # noqa: F811
    """Opened by a link, before the Compare page wrote the answers, the findings write both answers
    as rows of the flip's steered continuation and keep them: the Continuations page and the
    Steering page opened from the flip's link show them without a forward pass."""
    from urllib.parse import parse_qsl, urlsplit

    from app_helpers import ROOT
    from streamlit.testing.v1 import AppTest

    from lib.app import ui
    from lib.app.cache import ModelKey

    folder = str(tiny_folders["llama"])
    app.query_params.update({"model": folder, "a": "The capital of France is",
                             "b": "The capital of Italy is"})
    app.switch_page("pages/findings.py").run()
    assert not app.exception, app.exception
    found = _findings(app)
    assert "α =" in found["flip"] and not found["says"].startswith("⛔"), found
    link = next(m.value for m in app.main.markdown if "steer_layer=" in m.value)
    query = dict(parse_qsl(urlsplit(link[link.index("(") + 1:-1]).query))
    model = ui.get_model(ModelKey(folder))
    before = model.forward_passes
    opened = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)  # a new session, same results
    opened.query_params.update(query)
    opened.switch_page("pages/steering.py").run()
    opened.button(key="steering-run").click().run()
    assert not opened.exception, opened.exception
    table = next(df.value for df in opened.dataframe if "KL vs unsteered (bits)" in df.value.columns)
    assert list(table["run"]) == ["unsteered", "steered", "negated", "random"]
    assert model.forward_passes == before
    opened.switch_page("pages/continuations.py").run()
    assert not opened.exception, opened.exception
    assert table["continuation"].iloc[0] in [t.value for t in opened.text]  # B's answer: the batch's row 0
    assert model.forward_passes == before
