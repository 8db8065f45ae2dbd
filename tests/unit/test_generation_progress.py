"""A continuation heard token by token (issue 24): `continue_capture(progress=…)` reports each new
token with the text so far, ending with the whole continuation; an exception from the callback (a
Cancel button) stops it at once, and the results cache then holds nothing for it. The nnsight
backend, which generates in one session, reports once at the end with the same tokens."""

from __future__ import annotations

import threading

import pytest

from lib.analyses.generation import GenerationSettings, continue_capture
from lib.app.cache import ResultCache
from lib.core.capture import capture
from lib.core.models import load_model

PROMPT = "The capital of France is"


class Stop(Exception):
    pass


def test_progress_hears_every_token_and_ends_with_the_continuation(family_model):
    cap = capture(family_model, PROMPT)
    heard: list[tuple[float, str]] = []
    written = continue_capture(family_model, cap, GenerationSettings(6),
                               lambda done, text: heard.append((done, text)))
    assert [done for done, _ in heard] == [(i + 1) / 6 for i in range(len(written.token_ids))]
    assert heard[-1][1] == written.text
    assert written == continue_capture(family_model, cap, GenerationSettings(6))  # same tokens as unheard


def test_an_exception_from_progress_stops_the_continuation_and_nothing_is_cached(family_model):
    cap = capture(family_model, PROMPT)
    settings = GenerationSettings(8)
    before = family_model.forward_passes

    def cancel_after_two(done: float, text: str) -> None:
        if done >= 2 / 8:
            raise Stop

    cache = ResultCache(4)
    with pytest.raises(Stop):
        cache.get("key", lambda: continue_capture(family_model, cap, settings, cancel_after_two))
    assert family_model.forward_passes - before == 2  # the prompt's pass and one more: stopped at once
    assert "key" not in cache
    free = []

    def take_lock() -> None:
        taken = family_model.lock.acquire(timeout=5)
        free.append(taken)
        if taken:
            family_model.lock.release()

    other = threading.Thread(target=take_lock)
    other.start()
    other.join()
    assert free == [True]  # the model is free for the next run (another thread takes its lock)


def test_nnsight_reports_once_with_the_same_tokens(family_model, tiny_folders):
    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight")
    heard: list[str] = []
    settings = GenerationSettings(5)
    written = continue_capture(twin, capture(twin, PROMPT), settings, lambda _, text: heard.append(text))
    assert heard == [written.text]
    local = continue_capture(family_model, capture(family_model, PROMPT), settings)
    assert written.token_ids == local.token_ids
