"""Save on the Compare page and the History page, driven with AppTest on a tiny model."""

from __future__ import annotations

import pytest
from app_helpers import lens_tables as _lens_tables
from app_helpers import submit
from streamlit.proto.WidgetStates_pb2 import WidgetState

from lib.app.history import DB_NAME, History

A, B = "The capital of France is", "The capital of Italy is"
HISTORY = "pages/history.py"


@pytest.fixture
def data(tmp_path, monkeypatch):
    """An empty data folder of our own for each test."""
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path))
    return tmp_path


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


def _save_two(app, tiny_folders):
    """Two saved comparisons: #1 'france' (A, B) and #2 'other' (A, 'Another prompt')."""
    submit(app, model=str(tiny_folders["gpt2"]), a=A, b=B, k=3)
    _save(app, "france")
    submit(app, b="Another prompt")
    _save(app, "other")
    app.switch_page(HISTORY).run()
    assert not app.exception


def _selector(app):
    [selector] = [s for s in app.main.selectbox if s.label == "Saved comparison"]
    return selector


def _choose(app, saved_id: int):
    _selector(app).set_value(saved_id).run()
    assert not app.exception


def _as_the_browser_holds_it(selectbox, widget_id: str, label: str) -> None:
    """Make AppTest answer as the browser does for the selector it showed as `widget_id`: with the
    text of the option it showed (`label`, the name from before a rename), not the option's id.
    A selector with another id is a widget the browser had not seen: it answers normally."""
    if selectbox.id != widget_id:
        return
    stale = WidgetState(id=widget_id, string_value=label)
    selectbox.__class__ = type(
        "StaleSelectbox", (type(selectbox),), {"_widget_state": property(lambda _: stale)}
    )


def test_after_a_rename_delete_targets_the_renamed_comparison(app, data, tiny_folders):
    _save_two(app, tiny_folders)
    _choose(app, 1)
    shown, shown_id = _selector(app).options[1], _selector(app).id
    assert shown.startswith("#1")
    app.main.text_input(key="rename-1").input("france renamed")
    [rename] = [b for b in app.main.button if b.label == "Rename"]
    rename.click().run()
    assert _selector(app).value == 1
    [delete] = [b for b in app.main.button if b.label.startswith("🗑")]
    _as_the_browser_holds_it(_selector(app), shown_id, shown)
    delete.click().run()
    warning = app.warning[0].value
    assert "#1" in warning and "france renamed" in warning and A in warning and B in warning
    assert "#2" not in warning
    [yes] = [b for b in app.main.button if b.label == "Yes, delete"]
    yes.click().run()
    assert not app.exception
    assert [e.name for e in History(data).list()] == ["other"]
    assert _selector(app).value == 2  # on the one left


def test_after_a_delete_the_selection_moves_to_its_neighbour_and_stays_on_it(app, data, tiny_folders):
    _save_two(app, tiny_folders)
    _choose(app, 2)
    [delete] = [b for b in app.main.button if b.label.startswith("🗑")]
    delete.click().run()
    [yes] = [b for b in app.main.button if b.label == "Yes, delete"]
    yes.click().run()
    assert _selector(app).value == 1
    _choose(app, 1)
    app.main.text_input(key="rename-1").input("still one")
    [rename] = [b for b in app.main.button if b.label == "Rename"]
    rename.click().run()
    assert _selector(app).value == 1
    assert [t.value for t in app.text] == [A, B]


def test_open_in_all_pages_loads_it_into_the_sidebar_and_the_url(app, data, tiny_folders):
    _save_two(app, tiny_folders)
    _choose(app, 1)
    submit(app, b="Something else entirely")
    app.switch_page(HISTORY).run()
    _choose(app, 1)
    [open_all] = [b for b in app.main.button if b.label.startswith("Open in all pages")]
    open_all.click().run()
    assert not app.exception
    assert app.sidebar.text_area(key="prompt_b").value == B
    assert app.query_params["b"] == B and app.query_params["a"] == A
    app.switch_page("pages/compare.py").run()
    assert [t.value for t in app.text][:2] == [A, B]


@pytest.mark.parametrize(("page", "button", "kind"), [
    ("pages/patching.py", "patching-run", "patching.PatchResult"),
    ("pages/circuit.py", "circuit-run", "circuit.Circuit"),
])
def test_a_result_saved_on_its_page_reopens_on_the_history_page(app, data, tiny_folders, page, button, kind):
    """Another page's result (a patching grid, a circuit) saved there is kept in the History, read
    back as its own type without running the model, and shown on the History page."""
    from lib.app.history import result_type

    submit(app, a=A, b=B, model=str(tiny_folders["gpt2"]), k=3)
    app.switch_page(page).run()
    app.button(key=button).click().run()
    assert not app.exception, app.exception
    _save(app, "my result")
    assert any("Saved as #" in s.value for s in app.success)
    [entry] = History(data).list()
    saved = History(data).get(entry.id)
    assert entry.name == "my result" and saved.kind == kind
    assert isinstance(saved.value(), result_type(kind)) and saved.value().to_dict()
    app.switch_page(HISTORY).run()
    assert not app.exception, app.exception
    assert any(kind in c.value for c in app.caption)
    assert app.get("json")
