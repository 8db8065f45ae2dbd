"""The Findings page (AppTest): six findings in order for France/Italy on the embedded model, each
with its link, the report's download buttons; the numbers are the ones the pages behind it show."""

from __future__ import annotations

from app_helpers import app, submit  # noqa: F401  (fixture)

from lib.app.findings import STEPS, TITLES


def test_findings_page_shows_six_findings_and_the_report(app):  # noqa: F811
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
