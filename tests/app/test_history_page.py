"""Save on the Compare page and the History page, driven with AppTest on a tiny model."""

from __future__ import annotations

import pytest
from app_helpers import submit

from lib.app.history import DB_NAME, History

A, B = "The capital of France is", "The capital of Italy is"
HISTORY = "pages/history.py"


@pytest.fixture
def data(tmp_path, monkeypatch):
    """An empty data folder of our own for each test."""
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path))
    return tmp_path


def _lens_tables(at) -> list:
    return [df.value for df in at.dataframe if "#1" in df.value.columns]


def _save(at, name: str):
    [field] = [t for t in at.main.text_input if t.label == "Name"]
    field.input(name)
    [button] = [b for b in at.main.button if "Save" in b.label]
    button.click()
    return at.run()


def test_history_page_says_nothing_is_saved_yet(app, data):
    app.switch_page(HISTORY).run()
    assert not app.exception
    assert "Nothing saved yet" in app.info[0].value


def test_saved_comparison_reopens_with_the_compare_pages_tables(app, data, tiny_folders):
    submit(app, model=str(tiny_folders["gpt2"]), a=A, b=B, k=3)
    compared = _lens_tables(app)
    _save(app, "capitals")
    assert not app.exception
    assert "Saved as #1" in app.success[0].value
    app.switch_page(HISTORY).run()
    assert not app.exception
    assert list(app.dataframe[0].value["name"]) == ["capitals"]
    reopened = _lens_tables(app)
    assert len(reopened) == 2
    assert all(r.equals(c) for r, c in zip(reopened, compared, strict=True))
    assert [t.value for t in app.text] == [A, B]


def test_rename_export_buttons_and_confirmed_delete(app, data, tiny_folders):
    submit(app, model=str(tiny_folders["gpt2"]), a=A, b=B, k=3)
    _save(app, "first name")
    app.switch_page(HISTORY).run()
    assert [b.label for b in app.download_button] == ["⬇ Export this (JSON)", "⬇ Export all (JSON)"]
    app.main.text_input(key="rename-1").input("second name")
    [rename] = [b for b in app.main.button if b.label == "Rename"]
    rename.click().run()
    assert list(app.dataframe[0].value["name"]) == ["second name"]

    [delete] = [b for b in app.main.button if b.label.startswith("🗑")]
    delete.click().run()
    assert "cannot be undone" in app.warning[0].value
    [cancel] = [b for b in app.main.button if b.label == "Cancel"]
    cancel.click().run()
    assert [e.name for e in History(data).list()] == ["second name"]

    [delete] = [b for b in app.main.button if b.label.startswith("🗑")]
    delete.click().run()
    [yes] = [b for b in app.main.button if b.label == "Yes, delete"]
    yes.click().run()
    assert not app.exception
    assert History(data).list() == []
    assert "Nothing saved yet" in app.info[0].value


def test_damaged_database_is_reported_and_a_fresh_one_used(app, data):
    (data / DB_NAME).write_bytes(b"not a database" * 64)
    app.switch_page(HISTORY).run()
    assert not app.exception
    assert "set aside" in app.error[0].value
    assert "Nothing saved yet" in app.info[0].value
    assert len(list(data.glob(f"{DB_NAME}.corrupt-*"))) >= 1
