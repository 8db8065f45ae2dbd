"""twinlens shared on a network (issue 17), driven with AppTest: the server's address is set beyond
loopback (`server.address = 0.0.0.0`, as `make run HOST=0.0.0.0` does), so a session is a guest
unless it opened the operator link with this start's secret."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from app_helpers import ROOT, AppTest, lens_tables, submit
from bad_input_cases import (
    GOOD,
    GUEST_MODEL_CASES,
    GUEST_REFUSED,
    build_guest_disk,
    model_cases,  # noqa: F401  (fixture)
)
from streamlit import config

from lib.app import access, session, ui
from lib.app.cache import Results
from lib.app.history import History
from lib.app.request import Request

SECRET = "operator-secret-of-this-start"
B = "The capital of Italy is"
EXPERT = {"trust_remote_code", "allow_pickle"}
HISTORY = "pages/history.py"


@pytest.fixture
def shared(monkeypatch, tmp_path, tiny_folders, model_cases):  # noqa: F811
    """A server listening on 0.0.0.0 with secret SECRET; the operator listed the tiny models' and
    the bad models' folders. Models in memory and saved comparisons start empty."""
    listed = [tiny_folders["gpt2"].parent, Path(model_cases["pickle_weights_only"].spec).parent]
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    monkeypatch.setenv(access.TOKEN_ENV, SECRET)
    monkeypatch.setenv(access.MODELS_ENV, ":".join(str(p) for p in listed))
    monkeypatch.delenv(access.EXPERT_ENV, raising=False)
    monkeypatch.delenv(access.SHARED_ENV, raising=False)
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(ui, "RESULTS", Results())
    monkeypatch.setattr(ui, "_LOADED_BY", {})
    yield tmp_path
    config.set_option("server.address", before)


def new_session() -> AppTest:
    """Another browser on the same server."""
    return AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180)


def as_operator(at: AppTest, token: str = SECRET) -> AppTest:
    at.query_params[access.TOKEN_PARAM] = token
    return at.run()


def expert_checkboxes(at: AppTest) -> set[str]:
    return {c.key for c in at.sidebar.checkbox} & EXPERT


def captions(at: AppTest) -> str:
    return "\n".join(c.value for c in at.sidebar.caption)


def banner(at: AppTest) -> list[str]:
    return [w.value for w in at.main.warning if "ALLOW_REMOTE_EXPERT" in w.value]


def test_guest_gets_no_expert_options_and_is_told_it_is_a_guest(app, shared):
    app.run()
    assert not app.exception
    assert expert_checkboxes(app) == set()
    assert not [e for e in app.sidebar.expander if "Expert" in e.label]
    assert "**guest**" in captions(app)
    assert not banner(app)


def test_operator_link_gives_every_option_and_leaves_the_address_bar(app, shared):
    as_operator(app)
    assert not app.exception
    assert expert_checkboxes(app) == EXPERT
    assert access.TOKEN_PARAM not in app.query_params
    assert "**operator**" in captions(app)
    app.run()  # the session stays the operator without the secret in the URL
    assert expert_checkboxes(app) == EXPERT
    assert SECRET not in str(app.query_params) and not any(SECRET in m.value for m in app.markdown)


@pytest.mark.parametrize("token", ["wrong", "", SECRET[:-1], SECRET + "x", SECRET.upper()])
def test_a_wrong_or_empty_secret_is_a_guest(app, shared, token):
    as_operator(app, token)
    assert not app.exception
    assert expert_checkboxes(app) == set()
    assert access.TOKEN_PARAM not in app.query_params
    if token:
        assert any("does not match" in w.value for w in app.sidebar.warning)


def test_on_loopback_every_browser_is_the_operator(app, monkeypatch):
    monkeypatch.setenv(access.TOKEN_ENV, SECRET)
    assert config.get_option("server.address") == "localhost"  # .streamlit/config.toml
    app.run()
    assert expert_checkboxes(app) == EXPERT
    assert "guest" not in captions(app) and "operator" not in captions(app)
    other = as_operator(new_session(), "anything")  # a token is dropped, not needed
    assert expert_checkboxes(other) == EXPERT and access.TOKEN_PARAM not in other.query_params
    assert not other.sidebar.warning


@pytest.mark.parametrize("proof", [True, "wrong", SECRET[:8], 1])
def test_a_crafted_session_state_cannot_turn_the_options_on(app, shared, model_cases, proof):  # noqa: F811
    pickle_only = model_cases["pickle_weights_only"].spec  # inside a listed folder
    app.run()
    app.session_state[session.OPERATOR_KEY] = proof
    app.session_state["allow_pickle"] = True
    app.session_state["trust_remote_code"] = True
    submit(app, model=pickle_only, a=GOOD, b=B, k=3)
    assert not app.exception
    assert expert_checkboxes(app) == set()
    request = app.session_state[session.REQUEST_KEY]
    assert request.model == pickle_only and not request.allow_pickle and not request.trust_remote_code
    assert "pickle" in app.error[0].value and not lens_tables(app)
    # the stored request itself, crafted with the options on
    app.session_state[session.REQUEST_KEY] = Request(model=pickle_only, a=GOOD, b=B, k=3, allow_pickle=True)
    app.run()
    assert "pickle" in app.error[0].value and not lens_tables(app)
    assert not app.session_state[session.REQUEST_KEY].allow_pickle


def test_a_crafted_link_cannot_turn_the_options_on(app, shared, model_cases):  # noqa: F811
    pickle_only = model_cases["pickle_weights_only"].spec
    app.query_params.update({"model": pickle_only, "a": GOOD, "b": B, "k": "3", "allow_pickle": "1",
                             "trust_remote_code": "true", access.TOKEN_PARAM: "guess"})
    app.run()
    assert not app.exception
    assert "pickle" in app.error[0].value and not lens_tables(app)
    assert expert_checkboxes(app) == set()


def test_the_operator_may_turn_pickle_on(app, shared, model_cases):  # noqa: F811
    as_operator(app)
    app.sidebar.checkbox(key="allow_pickle").check()
    submit(app, model=model_cases["pickle_weights_only"].spec, a=GOOD, b=B, k=3)
    assert not app.exception and not app.error
    assert len(lens_tables(app)) == 2


def test_a_path_outside_the_listed_folders_is_refused_saying_nothing_of_the_disk(app, shared, tiny_folders):
    """The refused cases of the bad-input table, plus a good model outside the listed folders:
    one error each, the same words whether the path is a model, a file, a folder or nothing."""
    disk = build_guest_disk(shared / "disk")
    shutil.copytree(tiny_folders["gpt2"], disk["outside"] / "secret-model", dirs_exist_ok=True)
    refused = [case for case in GUEST_MODEL_CASES if case.refused and "\x00" not in case.spec]
    specs = [case.spec.format(**disk) for case in refused]
    specs += [str(tiny_folders["gpt2"].parent / ".." / "elsewhere"), "/etc"]
    messages = set()
    app.run()
    for spec in specs:
        submit(app, model=spec, a=GOOD, b=B, k=3)
        assert not app.exception, spec
        assert len(app.error) == 1 and not lens_tables(app), spec
        message = app.error[0].value.replace("\\", "")
        assert GUEST_REFUSED in message and "exist" not in message and "holds" not in message, message
        messages.add(message.replace(f"'{spec}'", "'<spec>'", 1))
    assert len(messages) == 1, messages
    submit(app, model=str(tiny_folders["gpt2"]))  # inside a listed folder: loads
    assert not app.error and len(lens_tables(app)) == 2


def test_a_hub_id_that_is_a_folder_here_reads_like_a_model_the_hub_lacks(
    app, shared, tiny_folders, monkeypatch
):
    monkeypatch.chdir(shared)
    shutil.copytree(tiny_folders["gpt2"], shared / "project")  # 'project' is also a valid hub id
    messages = []
    app.run()
    for spec in ("project", "no-such-project"):
        submit(app, model=spec, a=GOOD, b=B, k=3)
        assert not app.exception and len(app.error) == 1 and not lens_tables(app)
        messages.append(app.error[0].value.replace(spec, "<spec>"))
    assert messages[0] == messages[1]


def _save(at: AppTest, name: str) -> AppTest:
    [field] = [t for t in at.main.text_input if t.label == "Name"]
    field.input(name)
    [button] = [b for b in at.main.button if "Save" in b.label]
    button.click()
    return at.run()


def _history_buttons(at: AppTest) -> list[str]:
    return [b.label for b in at.main.button] + [b.label for b in at.main.download_button]


def test_history_a_guest_changes_only_its_own_saves(app, shared, tiny_folders):
    model = str(tiny_folders["gpt2"])
    submit(app, model=model, a=GOOD, b=B, k=3)
    _save(app, "saved by guest one")
    assert "Saved as #1" in app.success[0].value

    other = new_session()
    other.run()
    other.switch_page(HISTORY).run()
    assert not other.exception
    assert list(other.dataframe[0].value["name"]) == ["saved by guest one"]
    assert list(other.dataframe[0].value["saved by"]) == ["another browser"]
    assert [t.value for t in other.text] == [GOOD, B]  # reopened: reading is for everyone
    buttons = _history_buttons(other)
    assert "Rename" not in buttons and "🗑 Delete…" not in buttons and "⬇ Export all (JSON)" not in buttons
    assert "⬇ Export mine (JSON)" in buttons and "⬇ Export this (JSON)" in buttons
    assert any("for the operator and for the browser session that saved it" in c.value for c in other.caption)
    other.session_state["history_confirm_delete"] = 1  # crafted: no confirmation is offered
    other.run()
    assert "Yes, delete" not in _history_buttons(other)
    assert [e.name for e in History().list()] == ["saved by guest one"]

    app.switch_page(HISTORY).run()
    assert list(app.dataframe[0].value["saved by"]) == ["you"]
    app.main.text_input(key="rename-1").input("renamed by its saver")
    next(b for b in app.main.button if b.label == "Rename").click().run()
    assert not app.exception
    assert [e.name for e in History().list()] == ["renamed by its saver"]

    operator = as_operator(new_session())
    operator.switch_page(HISTORY).run()
    assert "⬇ Export all (JSON)" in _history_buttons(operator)
    next(b for b in operator.main.button if b.label.startswith("🗑")).click().run()
    next(b for b in operator.main.button if b.label == "Yes, delete").click().run()
    assert not operator.exception
    assert History().list() == []


def test_history_refuses_a_guests_rename_and_delete_of_anothers_save(shared, tiny_models):
    from lib.analyses.compare import compare_prompts

    policy = access.Policy.make("0.0.0.0", {access.TOKEN_ENV: SECRET})
    saver, other = policy.access(None, "tab-1"), policy.access(None, "tab-2")
    operator = policy.access(SECRET, "x")
    history = History()
    comparison = compare_prompts(tiny_models["gpt2"], GOOD, B, top_k=2)
    saved = history.save("one", {}, comparison, owner=saver.owner)
    for act in (lambda: history.rename(saved, "taken", by=other), lambda: history.delete(saved, by=other)):
        with pytest.raises(access.AccessError, match="Only the operator"):
            act()
    assert [e.name for e in history.list()] == ["one"]
    import json

    assert json.loads(history.export(by=other))["comparisons"] == []
    assert len(json.loads(history.export(by=saver))["comparisons"]) == 1
    assert "tab-1" not in history.export(by=operator)  # the owner id is never exported
    history.rename(saved, "renamed", by=saver)
    history.delete(saved, by=operator)
    assert history.list() == []


def test_allow_remote_expert_gives_guests_the_options_with_a_banner_for_everyone(app, shared, monkeypatch):
    monkeypatch.setenv(access.EXPERT_ENV, "1")
    app.run()
    assert expert_checkboxes(app) == EXPERT
    assert len(banner(app)) == 1
    operator = as_operator(new_session())
    assert len(banner(operator)) == 1
    app.switch_page(HISTORY).run()
    assert len(banner(app)) == 1  # on every page


def test_memory_line_says_who_loaded_what_and_guests_cannot_unload_the_operators(app, shared, tiny_folders):
    operator = as_operator(app)
    submit(operator, model=str(tiny_folders["gpt2"]), a=GOOD, b=B, k=3)
    submit(operator, model=str(tiny_folders["llama"]))
    assert len(lens_tables(operator)) == 2
    assert captions(operator).count("loaded by you") == 2

    guest = new_session()
    submit(guest, model=str(tiny_folders["qwen2"]), a=GOOD, b=B, k=3)
    assert not guest.exception
    assert "loaded by the operator" in guest.error[0].value and not lens_tables(guest)
    submit(guest, model=str(tiny_folders["gpt2"]))  # one already in memory: shared
    assert not guest.error and len(lens_tables(guest)) == 2
    assert captions(guest).count("loaded by the operator") == 2
    assert sorted(key.spec for key, _ in ui.RESULTS.models.items()) == sorted(
        [str(tiny_folders["gpt2"]), str(tiny_folders["llama"])]
    )


def test_a_guest_load_unloads_only_a_model_a_guest_loaded(app, shared, tiny_folders):
    operator = as_operator(app)
    submit(operator, model=str(tiny_folders["gpt2"]), a=GOOD, b=B, k=3)
    guest = new_session()
    for family in ("llama", "qwen2"):
        submit(guest, model=str(tiny_folders[family]), a=GOOD, b=B, k=3)
        assert not guest.error and len(lens_tables(guest)) == 2, family
    held = {key.spec for key, _ in ui.RESULTS.models.items()}
    assert held == {str(tiny_folders["gpt2"]), str(tiny_folders["qwen2"])}
    assert "loaded by you" in captions(guest) and "loaded by the operator" in captions(guest)
    operator.run()
    assert "loaded by a guest" in captions(operator)


def _load_crafted_keys() -> None:
    """An app that skips the sidebar and asks ui for models directly, as a crafted request would."""
    import streamlit as st

    from lib.analyses.compare import compare_captures
    from lib.app import ui
    from lib.app.cache import ModelKey, RunKey

    for model in (ModelKey("default", allow_pickle=True), ModelKey("default", trust_remote_code=True),
                  ModelKey("/etc"), ModelKey("/no/such/folder")):
        run = RunKey(model, "x")
        asks = ((ui.get_model, (model,), {}), (ui.get_capture, (run,), {}),
                (ui.cached, (compare_captures, model, run, run), {"top_k": 1}))
        for ask, args, kwargs in asks:
            try:
                ask(*args, **kwargs)
                st.write("served")
            except Exception as exc:  # noqa: BLE001  (the test reads what was raised)
                st.write(f"{type(exc).__name__}: {exc}")


def test_models_are_refused_where_they_load_not_only_in_the_sidebar(shared):
    at = AppTest.from_function(_load_crafted_keys, default_timeout=60).run()
    assert not at.exception
    said = [m.value for m in at.markdown]
    assert len(said) == 12 and not any(s == "served" for s in said), said
    assert [s.split(":")[0] for s in said] == ["AccessError"] * 12, said
