"""Record what a function returns while a test runs, without changing what it does."""

from __future__ import annotations

import pytest


def returns_of(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list:
    """Wrap `owner.name` for the rest of the test; the list fills with each call's return value."""
    returned: list = []
    original = getattr(owner, name)

    def spy(*args, **kwargs):
        returned.append(original(*args, **kwargs))
        return returned[-1]

    monkeypatch.setattr(owner, name, spy)
    return returned
