"""The sidebar's backend choice (issue 15): nnsight gives the page the same tables as local."""

from __future__ import annotations

from app_helpers import lens_tables, submit

from lib.app import ui
from lib.app.cache import ModelKey
from lib.core.hooks import HooksBackend
from lib.core.nnsight_backend import NnsightBackend


def _tables(at) -> list:
    return [df.to_dict() for df in lens_tables(at)]


def test_nnsight_backend_draws_the_compare_page_like_local(app, tiny_folders):
    folder = str(tiny_folders["gpt2"])
    at = submit(app, model=folder, a="The capital of France is", b="The capital of Italy is")
    assert not at.exception and not at.error
    local = _tables(at)
    at.sidebar.radio(key="backend").set_value("nnsight")
    at.sidebar.button[0].click()
    at.run()
    assert not at.exception and not at.error
    assert _tables(at) == local and local
    traced = ui.get_model(ModelKey(folder, backend="nnsight")).backend
    assert isinstance(traced, NnsightBackend) and traced.traces >= 2  # both prompts ran as traces
    assert isinstance(ui.get_model(ModelKey(folder)).backend, HooksBackend)
