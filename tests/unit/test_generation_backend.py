"""Continuations, character completion and steering run only through the model's backend
(`backend.generate` / `backend.run`), so any backend that offers them serves them; a backend that
does not yet (nnsight today) refuses with one plain message."""

from __future__ import annotations

import pytest

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.generation import complete_characters, continue_capture
from lib.analyses.steering import steer_captures, steering_sweep
from lib.core.capture import capture
from lib.core.errors import TwinlensError
from lib.core.models import load_model


class Spy:
    """A backend that records which of its methods ran and hands every call to the real one."""

    def __init__(self, real) -> None:
        self.real, self.calls = real, []

    def __getattr__(self, name):
        method = getattr(self.real, name)

        def recorded(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)

        return recorded


@pytest.fixture
def spied(tiny_models, monkeypatch):
    loaded = tiny_models["llama"]
    spy = Spy(loaded.backend)
    monkeypatch.setattr(loaded, "backend", spy)
    return loaded, spy


def test_every_model_pass_goes_through_the_backend(spied):
    loaded, spy = spied
    cap_a, cap_b = capture(loaded, "The capital of France is"), capture(loaded, "The capital of Italy is")
    spy.calls.clear()
    passes = loaded.forward_passes
    continue_capture(loaded, cap_a, GenerationSettings(4))
    tok = loaded.tokenizer
    opener = next(t for t in tok("🐠", add_special_tokens=False)["input_ids"])
    complete_characters(loaded, cap_a.token_ids, [opener])
    steer_captures(loaded, cap_a, cap_b, layer=1, alpha=2.0, settings=GenerationSettings(3))
    steering_sweep(loaded, cap_a, cap_b, alphas=(1.0,))
    assert spy.calls.count("generate") == 3 and "run" in spy.calls
    assert set(spy.calls) <= {"generate", "run"}
    assert loaded.forward_passes > passes  # the passes were the backend's (it counts them)


def test_a_backend_without_generate_is_refused_plainly(tiny_folders):
    """nnsight: continuations and steering either match the local backend or are refused with one
    plain message (TwinlensError, naming the local backend) — never a traceback."""
    folder = str(tiny_folders["gpt2"])
    local, traced = load_model(folder), load_model(folder, backend="nnsight")
    text_a, text_b = "The capital of France is", "The capital of Italy is"
    expected = continue_capture(local, capture(local, text_a), GenerationSettings(4))
    cap_a, cap_b = capture(traced, text_a), capture(traced, text_b)
    try:
        got = continue_capture(traced, cap_a, GenerationSettings(4))
    except TwinlensError as exc:
        assert "local backend" in str(exc) and "\n" not in str(exc)
        with pytest.raises(TwinlensError, match="local backend"):
            steer_captures(traced, cap_a, cap_b, layer=1, alpha=2.0, settings=GenerationSettings(3))
    else:
        assert got.token_ids == expected.token_ids
