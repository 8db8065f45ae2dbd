"""The helpers pages share instead of writing their own: a part that may fail alone, a "run when
asked" gate, and an extra that falls back to a default."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _part_that_fails() -> None:
    import streamlit as st

    from lib.app import views
    from lib.core.errors import PromptError

    with views.errors_shown():
        st.write("before")
        raise PromptError("That word splits into several tokens.")
    st.write("the page goes on")


def test_a_failing_part_shows_one_error_and_the_page_goes_on():
    at = AppTest.from_function(_part_that_fails).run()
    assert [e.value for e in at.error] == ["That word splits into several tokens."]
    assert "the page goes on" in [m.value for m in at.markdown]
    assert not at.exception


def _part_with_a_bug() -> None:
    from lib.app import views

    with views.errors_shown():
        raise KeyError("a bug is not the user's input")


def test_a_bug_is_not_swallowed():
    at = AppTest.from_function(_part_with_a_bug).run()
    assert at.exception and not at.error


def _gate() -> None:
    import streamlit as st

    from lib.app import session

    wanted = st.text_input("input", key="input")
    if session.asked("Run", key="run", wanted=wanted):
        st.write(f"ran for [{wanted}]")


def test_the_gate_keeps_work_shown_until_its_inputs_change():
    at = AppTest.from_function(_gate).run()
    assert not at.markdown
    at.button(key="run").click().run()
    assert [m.value for m in at.markdown] == ["ran for []"]
    at.run()  # another rerun (any widget): still shown
    assert [m.value for m in at.markdown] == ["ran for []"]
    at.text_input(key="input").set_value("new").run()
    assert not at.markdown  # the inputs changed: asked again
    at.button(key="run").click().run()
    assert [m.value for m in at.markdown] == ["ran for [new]"]


def test_cached_or_falls_back_only_on_a_users_error(monkeypatch):
    from lib.app import ui
    from lib.core.errors import SettingsError

    def refused():
        raise SettingsError("cannot")

    monkeypatch.setattr(ui, "cached", lambda fn, *a, **k: fn(*a, **k))
    assert ui.cached_or("pieces", refused) == "pieces"
    assert ui.cached_or("pieces", lambda: "whole") == "whole"
