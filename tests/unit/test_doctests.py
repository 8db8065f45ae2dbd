"""Docstring examples are promises: every `>>>` in lib runs (the model-loading ones in
tests/integration/test_doctests_real_model.py)."""

from __future__ import annotations

import pytest
from doctests import loads_a_model, modules_with_examples, run

LIGHT = [m for m in modules_with_examples() if not loads_a_model(m)]


def test_the_examples_are_found():
    assert {"lib.core.sites", "lib.core.records", "lib.app.cache"} <= set(LIGHT)


@pytest.mark.parametrize("module", LIGHT)
def test_docstring_examples_run(module):
    result = run(module)
    assert result.attempted > 0 and result.failed == 0


def test_a_broken_example_fails(tmp_path, monkeypatch):
    (tmp_path / "planted_example.py").write_text('"""\n>>> 1 + 1\n3\n"""\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    assert run("planted_example").failed == 1
