"""One results cache (lib.app.cache): keys are frozen values, each is computed once, keys resolve."""

from __future__ import annotations

import threading
import time

import pytest

from lib.analyses.compare import compare_captures
from lib.app.cache import ModelKey, ResultCache, Results, RunKey
from lib.core.errors import PromptError


def test_each_key_is_computed_once_even_when_sessions_ask_at_once():
    cache, calls = ResultCache(4), []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.2)
        return 42

    threads = [threading.Thread(target=cache.get, args=("k", slow)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [1] and cache.get("k", lambda: 0) == 42


def test_the_least_recently_used_entry_leaves_first():
    cache = ResultCache(2)
    cache.get("a", lambda: 1), cache.get("b", lambda: 2), cache.get("a", lambda: 0), cache.get("c", lambda: 3)
    assert "a" in cache and "c" in cache and "b" not in cache


def test_a_failed_computation_is_not_kept():
    cache = ResultCache(2)

    def fail() -> int:
        raise PromptError("no")

    with pytest.raises(PromptError):
        cache.get("k", fail)
    assert cache.get("k", lambda: 7) == 7


def test_results_pass_keys_on_as_the_model_and_its_captures(tiny_folders, tiny_models):
    results = Results()
    key = ModelKey(str(tiny_folders["llama"]))
    run_a, run_b = RunKey(key, "The capital of France is"), RunKey(key, "The capital of Italy is")
    model = results.model(key)
    assert model is tiny_models["llama"]  # a model in use is not loaded twice
    before = model.forward_passes
    first = results.get(compare_captures, key, run_a, run_b, top_k=3)
    again = results.get(compare_captures, key, run_a, run_b, top_k=3)
    assert again is first and model.forward_passes - before == 2  # one pass per prompt, once
    assert first == compare_captures(model, results.capture(run_a), results.capture(run_b), top_k=3)
    other = results.get(compare_captures, key, run_a, run_b, top_k=4)
    assert other.settings["top_k"] == 4 and model.forward_passes - before == 2


def test_keys_are_frozen_values():
    key = ModelKey("default")
    assert RunKey(key, "x") == RunKey(ModelKey("default"), "x")
    assert hash(RunKey(key, "x")) == hash(RunKey(ModelKey("default"), "x"))
    assert ModelKey("default", allow_pickle=True) != key  # expert options are part of a model's identity
