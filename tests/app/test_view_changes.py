"""After a comparison, looking around (other pages, display controls, top-k) runs no forward pass."""

from __future__ import annotations

from app_helpers import submit
from view_driver import first_views, look_around, page_files

from lib.analyses.generation import DEFAULT_SETTINGS, continue_capture
from lib.app import session, ui
from lib.app.cache import ModelKey


def test_view_changes_after_a_comparison_run_no_forward_pass(app, real_model):
    submit(app, a="The capital of France is", b="The capital of Italy is")
    assert not app.exception, app.exception
    first_views(app)
    served = ui.get_model(ModelKey())
    before = served.forward_passes
    done = look_around(app)
    submit(app, k=7)  # a new top-k changes what is shown, not what was run
    assert not done["exceptions"], done["exceptions"]
    assert len(done["pages"]) == len(page_files()) > 1
    assert served.forward_passes == before


def test_a_new_prompt_runs_exactly_one_forward_pass(app, real_model):
    submit(app, a="The capital of France is", b="The capital of Italy is")
    served = ui.get_model(ModelKey())
    before = served.forward_passes
    submit(app, b="The capital of Spain, a test of view changes, is")
    assert not app.exception, app.exception
    run_b = app.session_state[session.REQUEST_KEY].runs[1]
    answer_b = ui.RESULTS.get(continue_capture, ModelKey(), run_b.prompt_only, DEFAULT_SETTINGS)  # cached
    # B's capture, then B's answer (one pass per new token); A's capture and answer are reused
    assert served.forward_passes - before == 1 + len(answer_b.token_ids)
