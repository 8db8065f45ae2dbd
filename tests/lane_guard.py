"""A test that reads the embedded model must say so: pytest plugin (tests/conftest.py loads it).

`make test-fast` leaves out `-m real_model` so that it never unpacks or loads the embedded
SmolLM2 (about 15 s from an empty cache, then 3 s a process). A test gets the mark from the
`real_model` fixture or from its folder (tests/conftest.py); a page test that asks the app for
"default" without either would slip into the fast lane and unpack the model there. For every test
without the mark, `lib.core.models.ensure_default_model` — which every load of "default" calls,
cached or not — fails with a message naming the test and the fix.
"""

from __future__ import annotations

import pytest

MESSAGE = "{test} loads the embedded model without the real_model mark: give it the real_model fixture"


@pytest.fixture(autouse=True)
def _embedded_model_needs_the_mark(request, monkeypatch):
    if request.node.get_closest_marker("real_model"):
        return
    from lib.core import models

    def refuse(*args, **kwargs):
        raise AssertionError(MESSAGE.format(test=request.node.nodeid))

    monkeypatch.setattr(models, "ensure_default_model", refuse)
