"""Eight sessions at once on one process: comparisons, patching and model switching in threads give
exactly what the same work gives run one after the other, and a session keeps the model it holds
while others switch (DESIGN.md: runs hold the model's lock; hooks never leak between runs)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from lib.analyses.compare import compare_prompts
from lib.analyses.patching import patch_residual
from lib.core.models import LoadedModel, load_model

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"
HAPPY, ANGRY = "You have happy emotion in yourself!", "You have angry emotion in yourself!"
ROUNDS = 3  # each session repeats its work, so runs of different sessions interleave


def _compare(model: LoadedModel, a: str, b: str, bos: str = "auto") -> dict:
    return compare_prompts(model, a, b, top_k=5, bos=bos).to_dict()


def _patch(model: LoadedModel, a: str, b: str) -> dict:
    return patch_residual(model, a, b, answer=" Paris", wrong=" Rome").to_dict()


def _switching(folders: list[Path], work: Callable[[LoadedModel], dict]) -> Callable[[], list[dict]]:
    """A session that loads each folder in turn (as the app does when its model box changes)."""
    return lambda: [work(load_model(str(folder))) for folder in folders]


@pytest.fixture(scope="module")
def copies(tmp_path_factory, tiny_folders) -> dict[str, Path]:
    """Copies of the tiny model folders: models no other test holds, so loading them really loads."""
    root = tmp_path_factory.mktemp("copies")
    families = ("gpt2", "llama", "qwen2", "mistral")
    return {f: Path(shutil.copytree(tiny_folders[f], root / f)) for f in families}


@pytest.fixture(scope="module")
def sessions(tiny_models, copies) -> list[Callable[[], object]]:
    gpt2, llama, qwen2 = tiny_models["gpt2"], tiny_models["llama"], tiny_models["qwen2"]
    folders = [copies[f] for f in ("gpt2", "llama", "qwen2")]
    return [
        lambda: _compare(gpt2, FRANCE, ITALY),
        lambda: _patch(gpt2, FRANCE, ITALY),
        lambda: _compare(llama, HAPPY, ANGRY, bos="on"),
        lambda: _patch(llama, FRANCE, ITALY),
        _switching(folders, lambda m: _compare(m, FRANCE, ITALY)),
        _switching(folders[::-1], lambda m: _patch(m, FRANCE, ITALY)),
        lambda: _compare(qwen2, HAPPY, ITALY, bos="off"),
        lambda: (_compare(gpt2, ANGRY, HAPPY), _patch(qwen2, ITALY, FRANCE)),
    ]


def test_eight_concurrent_sessions_match_a_serial_run(sessions):
    serial = [session() for session in sessions]
    results: list[list[object]] = [[] for _ in sessions]
    errors: list[BaseException] = []
    start = threading.Barrier(len(sessions))

    def run(i: int) -> None:
        try:
            start.wait()
            for _ in range(ROUNDS):
                results[i].append(sessions[i]())
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for i, runs in enumerate(results):
        assert runs == [serial[i]] * ROUNDS, f"session {i} differs from the serial run"


def test_session_keeps_its_model_while_another_switches(tiny_models, copies):
    """Session 1 holds a model and runs on it while session 2 loads other models."""
    held = tiny_models["gpt2"]
    before = _compare(held, FRANCE, ITALY)
    switched = threading.Event()

    def switch() -> None:
        for family in ("llama", "qwen2", "gpt2", "mistral"):
            load_model(str(copies[family]))
        switched.set()

    other = threading.Thread(target=switch)
    other.start()
    during = []
    while not switched.is_set():
        during.append(_compare(held, FRANCE, ITALY))
    other.join()
    assert during and all(d == before for d in during)
    assert _compare(held, FRANCE, ITALY) == before
    assert not any(block._forward_pre_hooks or block._forward_hooks for block in held.architecture.blocks)
