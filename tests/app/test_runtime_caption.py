"""The sidebar says where the model runs: the device and dtype `load_model` chose."""

from __future__ import annotations

from app_helpers import submit


def test_sidebar_names_the_device_and_dtype_of_the_model_in_memory(app, real_model):
    submit(app, a="The capital of France is", b="The capital of Italy is")
    assert not app.exception, app.exception
    captions = [c.value for c in app.sidebar.caption]
    expected = f"{real_model.device.type}, {str(real_model.dtype).removeprefix('torch.')}"
    assert any("In memory:" in c and expected in c for c in captions), captions
