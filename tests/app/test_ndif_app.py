"""NDIF in the app (issue 15): the backend choice, the API key field, views that need residual
streams, and a cancelled job — driven with AppTest.

No network reaches NDIF here: loading a model "on NDIF" is replaced by the tiny GPT-2 on nnsight's
local-remote path (`remote="local"`: each job serialized and deserialized as for NDIF, then run
here). What the app does with the key, the pages and the cancel is what it does against NDIF.
"""

from __future__ import annotations

import pytest
from app_helpers import lens_tables, submit

from lib.app import ndif, session, ui, views
from lib.app.history import DB_NAME
from lib.core import models, nnsight_backend
from lib.core.models import load_model

KEY = "sk-ndif-secret-7c1e42"
A, B = "The capital of France is", "The capital of Italy is"


@pytest.fixture
def fake_ndif(tiny_folders, monkeypatch, tmp_path):
    """Models load "on NDIF" as the tiny GPT-2 on nnsight's local-remote path; returns the keys
    each load saw. Saved comparisons go to a folder of this test's own."""
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path))
    monkeypatch.delenv("NDIF_API_KEY", raising=False)
    ui.RESULTS.models.clear()  # a model loaded by an earlier test would skip the key check
    seen: list[str | None] = []

    def load_remote(spec: str, **settings):
        nnsight_backend.check_remote_ready(True)
        seen.append(nnsight_backend.api_key())
        return load_model(str(tiny_folders["gpt2"]), backend="nnsight", remote="local")

    monkeypatch.setattr(models, "_load_remote", load_remote)
    yield seen
    ui.RESULTS.models.clear()


def _on_ndif(at, key: str | None = KEY):
    at.run()
    at.sidebar.radio(key="backend").set_value("ndif")
    if key is not None:
        at.sidebar.text_input(key="ndif_api_key").input(key)
    return submit(at, model="meta-llama/Llama-3.1-70B", a=A, b=B, k=3)


def _tables(at) -> list:
    return [df.value.to_dict() for df in at.dataframe] + [t.to_dict() for t in lens_tables(at)]


def test_the_sidebar_key_runs_the_job_and_goes_nowhere_else(app, fake_ndif, tmp_path, monkeypatch):
    exported = []
    export_files = views.export_files

    def recorded(*args, **kwargs):
        files = export_files(*args, **kwargs)
        exported.extend(files)
        return files

    monkeypatch.setattr(views, "export_files", recorded)
    at = _on_ndif(app)
    assert not at.exception and not at.error, (at.exception, at.error)
    assert fake_ndif == [KEY]  # the typed key was the NDIF key while the model loaded
    assert _tables(at)
    # the link, the export and the History never hold the key
    assert all(KEY not in str(value) for value in at.query_params.values())
    assert exported and all(KEY.encode() not in _bytes(f.content) for f in exported)
    [name] = [t for t in at.main.text_input if t.label == "Name"]
    name.input("on ndif")
    next(b for b in at.main.button if "Save" in b.label).click()
    at.run()
    assert "Saved as #1" in at.success[0].value
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(DB_NAME))
    assert b"Llama-3.1-70B" in stored and KEY.encode() not in stored
    assert at.session_state["ndif_api_key"] == KEY  # it lives in this session's state only


def test_the_same_comparison_as_the_local_backend(app, fake_ndif, tiny_folders):
    at = _on_ndif(app)
    remote = _tables(at)
    at.sidebar.radio(key="backend").set_value("local")
    submit(at, model=str(tiny_folders["gpt2"]))
    assert not at.exception and not at.error
    assert _tables(at) == remote


@pytest.mark.parametrize("page", ["logit_lens", "distances", "continuations"])
def test_views_reduced_on_ndif_draw_what_the_local_backend_draws(app, fake_ndif, tiny_folders, page):
    at = _on_ndif(app)
    at.switch_page(f"pages/{page}.py").run()
    _press(at, "Generate" if page == "continuations" else None)
    assert not at.exception and not at.error, [e.value for e in at.error]
    remote = _tables(at)
    at.sidebar.radio(key="backend").set_value("local")
    submit(at, model=str(tiny_folders["gpt2"]))
    _press(at, "Generate" if page == "continuations" else None)
    assert not at.exception and not at.error
    assert _tables(at) == remote and remote


def _press(at, label: str | None):
    """Press the page's button that starts its computation (None: it computes when opened)."""
    if label:
        next(b for b in at.main.button if b.label == label).click()
        at.run()


def test_no_key_gives_the_plain_message(app, fake_ndif):
    at = _on_ndif(app, key=None)
    assert not at.exception
    assert any("No NDIF API key" in e.value and "sidebar" in e.value for e in at.error)


# page → the button that starts its computation (None: it computes when opened)
RESIDUAL_PAGES = {
    "diff": None, "watch": None, "tokens": "Run A and B with BOS on and off",
    "components": "Run components", "steering": "Steer",
}
RESIDUAL_PAGES["circuit"] = "Find the circuit"  # issue 27


@pytest.mark.parametrize("page", RESIDUAL_PAGES)
def test_a_view_that_needs_residual_streams_refuses_on_ndif(app, fake_ndif, page):
    at = _on_ndif(app)
    at.switch_page(f"pages/{page}.py").run()
    _press(at, RESIDUAL_PAGES[page])
    assert not at.exception
    assert any("needs each prompt's whole residual stream" in e.value for e in at.error), [
        e.value for e in at.error
    ]


def test_patching_on_ndif_draws_the_local_grid_and_says_why_the_patched_lens_is_not_run(
    app, fake_ndif, tiny_folders
):
    """A runs again inside the job of B's patched runs (Backend.transplant): the grid is the local
    backend's; B's lens after a patch would need B's patched residual stream, so it is not run."""
    import pandas as pd

    at = _on_ndif(app)
    at.switch_page("pages/patching.py").run()
    _press(at, "Run patching")
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("On NDIF this view is not run" in i.value for i in at.info)
    remote = at.dataframe[0].value
    at.sidebar.radio(key="backend").set_value("local")
    submit(at, model=str(tiny_folders["gpt2"]))
    _press(at, "Run patching")
    assert not at.exception and not at.error
    assert len(at.dataframe) == 2  # the grid, and B's lens after the chosen patch
    pd.testing.assert_frame_equal(remote, at.dataframe[0].value, check_exact=False, atol=1e-4)


def test_a_cancelled_job_is_not_sent_again_until_asked(app, fake_ndif, tiny_folders):
    at = _on_ndif(app)
    ui.clear_results()
    at.session_state[ndif.CANCELLED_STATE] = at.session_state[session.REQUEST_KEY]  # as Cancel does
    backend = load_model(str(tiny_folders["gpt2"]), backend="nnsight", remote="local").backend
    traces = backend.traces
    at.run()
    assert not at.exception
    assert any("You cancelled this NDIF job" in e.value for e in at.error) and not _tables(at)
    assert backend.traces == traces
    next(b for b in at.main.button if b.label == "Run it again").click()
    at.run()
    assert not at.exception and not at.error and _tables(at)


def _bytes(content: str | bytes) -> bytes:
    return content if isinstance(content, bytes) else content.encode()


def _findings(at) -> dict[str, str]:
    """Findings page: each step's title → its sentence (the markdown drawn right after the title)."""
    from lib.app.findings import STEPS, TITLES

    texts = [m.value for m in at.main.markdown]
    return {step: texts[texts.index(f"**{TITLES[step]}**") + 1] for step in STEPS}


def test_findings_on_ndif_run_the_reduced_steps_as_locally_and_say_why_not_for_the_rest(
    app, fake_ndif, tiny_folders
):
    """Steps 1–3 run reduced on NDIF (no capture keeps a residual stream) and read exactly as with
    the local backend; steps 4–6 say why they cannot run there."""
    from lib.app.findings import ON_NDIF

    at = _on_ndif(app)
    at.switch_page("pages/findings.py").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    remote = _findings(at)
    assert ui.RESULTS.captures.values() and all(c.residual is None for c in ui.RESULTS.captures.values())
    for step in ("writes", "concepts", "flip"):
        assert views.plain(ON_NDIF[step]) in remote[step] and remote[step].startswith("⛔")
    assert "cosine distance" in remote["part"] and "would next write" in remote["says"]
    labels = [b.label for b in at.main.get("download_button")]
    assert "⬇ Download report (HTML)" in labels
    at.sidebar.radio(key="backend").set_value("local")
    submit(at, model=str(tiny_folders["gpt2"]))
    assert not at.exception and not at.error
    local = _findings(at)
    for step in ("says", "part", "carries"):
        assert not remote[step].startswith("⛔") and remote[step] == local[step], step
