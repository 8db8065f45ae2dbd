"""The docstring examples that load the embedded model run, against the session's model."""

from __future__ import annotations

import pytest
from doctests import loads_a_model, modules_with_examples, run

HEAVY = [m for m in modules_with_examples() if loads_a_model(m)]


def test_the_model_examples_are_found():
    assert {"lib.analyses.compare", "lib.analyses.patching", "lib.analyses.generation"} <= set(HEAVY)


@pytest.mark.parametrize("module", HEAVY)
def test_docstring_examples_run_on_the_embedded_model(module, real_model):
    result = run(module)  # load_model() returns the session's model (one alive copy per identity)
    assert result.attempted > 0 and result.failed == 0
