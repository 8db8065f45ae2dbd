"""History's times read as a person says them (issue 24): 'today 09:14', '3 Dec 2025' — not ISO."""

from __future__ import annotations

from datetime import UTC, datetime

from app_helpers import submit

from lib.analyses.compare import compare_prompts
from lib.app.history import History
from lib.app.readable import when
from lib.app.request import Request
from lib.core.models import load_model

A, B = "The capital of France is", "The capital of Italy is"


def test_the_history_table_says_today_or_the_date(app, tmp_path, monkeypatch, tiny_folders):
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path))
    folder = str(tiny_folders["gpt2"])
    comparison = compare_prompts(load_model(folder), A, B, top_k=3)
    history = History(tmp_path)
    old = datetime(2025, 12, 3, 8, 5, tzinfo=UTC)
    history.save("last year", Request(model=folder, a=A, b=B, k=3).to_dict(), comparison, saved_at=old)
    history.save("now", Request(model=folder, a=A, b=B, k=3).to_dict(), comparison)
    submit(app, model=folder, a=A, b=B, k=3)
    app.switch_page("pages/history.py").run()
    assert not app.exception, app.exception
    table = app.dataframe[0].value
    assert "saved_at" not in table.columns
    shown = dict(zip(table["name"], table["saved"], strict=True))
    assert shown["now"].startswith("today ") and len(shown["now"]) == len("today 09:14")
    assert shown["last year"] == when(old.isoformat()) == f"{old.astimezone().day} Dec 2025"
