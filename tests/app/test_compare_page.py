"""The Compare page, driven with AppTest on the embedded model."""

from __future__ import annotations

import re

from app_helpers import lens_tables, submit

from lib.analyses.compare import compare_prompts


def test_compare_page_prompts_before_first_compare(app):
    app.run()
    assert not app.exception
    assert "Compare" in app.info[0].value


def test_compare_page_tables_hold_what_compare_prompts_returns(app, real_model):
    a, b = "The capital of France is", "The capital of Italy is"
    submit(app, a=a, b=b, k=5)
    assert not app.exception, app.exception
    assert not app.error
    expected = compare_prompts(real_model, a, b, top_k=5)
    tables = lens_tables(app)
    assert len(tables) == 2
    for table, side in zip(tables, (expected.a, expected.b), strict=True):
        assert table.loc["model", "#1"] == f"{side.final[0].token}  {side.final[0].prob:.3f}"
        assert table.loc["layer 0", "#1"] == f"{side.lens[0][0].token}  {side.lens[0][0].prob:.3f}"
        last = f"layer {real_model.n_layers}"
        shown = [table.loc[last, f"#{i + 1}"] for i in range(5)]
        assert shown == [f"{t.token}  {t.prob:.3f}" for t in side.lens[-1]]
    next_tokens = [m.value for m in app.markdown if m.value.startswith("**Next token")]
    assert [re.search(r"`(.*?)`", m).group(1) for m in next_tokens] == ["␣Paris", "␣Rome"]


def test_compare_page_shows_prompt_error_without_exception(app, real_model):
    submit(app, a="   ", b="The capital of Italy is")
    assert not app.exception
    assert "empty" in app.error[0].value


def test_compare_page_offers_json_and_csv_export(app, real_model):
    from lib.app import compare_frames
    from lib.app.request import Request
    from lib.app.views import export_files

    a, b = "The capital of France is", "The capital of Italy is"
    submit(app, a=a, b=b, k=3)
    assert not app.exception
    expected = compare_prompts(real_model, a, b, top_k=3)
    files = export_files("comparison", Request(a=a, b=b, k=3), expected.to_dict(),
                         compare_frames.comparison_tables(expected))
    names = [f.file_name for f in files]
    stem = names[0].removesuffix(".json")
    assert stem.startswith("comparison-the-capital-of-france-") and f"{stem}-distance.csv" in names
    import json

    assert json.loads(files[0].content)["a"]["final"][0]["token"] == "␣Paris"
    assert len([b for b in app.get("download_button")]) == len(files)


def test_a_bug_in_a_page_shows_a_plain_error_and_keeps_the_sidebar(app, monkeypatch, real_model):
    from lib.app import compare_frames

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a page")

    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)
    monkeypatch.setattr(compare_frames, "lens_frame", broken)
    submit(app, a="The capital of France is", b="The capital of Italy is")
    assert not app.exception
    assert any("failed unexpectedly" in e.value and "a bug in a page" in e.value for e in app.error)
    assert app.sidebar.text_area(key="prompt_a").value == "The capital of France is"
