"""A prompt longer than the model's context is refused on the page, naming the limit, before any pass."""

from __future__ import annotations

from app_helpers import submit


def test_prompt_over_the_context_is_refused_with_the_limit_and_no_forward_pass(app, real_model):
    limit = real_model.max_tokens
    before = real_model.forward_passes
    submit(app, a=" the" * (limit + 1), b="The capital of Italy is")
    assert not app.exception, app.exception
    assert any(f"at most {limit:,}" in e.value for e in app.error), [e.value for e in app.error]
    assert real_model.forward_passes == before
