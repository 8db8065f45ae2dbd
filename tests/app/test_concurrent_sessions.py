"""Eight browser sessions at once on one app process (threads over AppTest): comparisons, patching
and model switching, with three models for a cache of two, so sessions keep evicting each other's
model. Every session must see exactly what it sees when the sessions run one after another."""

from __future__ import annotations

import shutil
import threading
from contextlib import nullcontext
from pathlib import Path
from unittest.mock import MagicMock

import pytest
from app_helpers import ROOT, AppTest, lens_tables, next_tokens, submit
from streamlit.runtime import Runtime
from streamlit.runtime.caching.storage.dummy_cache_storage import MemoryCacheStorageManager
from streamlit.runtime.dataframe_source_manager import DataframeSourceManager
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import app_test as app_test_module
from streamlit.testing.v1 import local_script_runner
from streamlit.testing.v1.util import patch_config_options

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"
HAPPY, ANGRY = "You have happy emotion in yourself!", "You have angry emotion in yourself!"


class _RuntimeName:
    """Stands in for the name `Runtime` inside AppTest, which sets and then clears the process-wide
    `Runtime._instance` around every run: one run ending would pull the runtime from under the
    runs of the other threads. The real runtime is set once for the whole test instead."""

    _instance = None


@pytest.fixture
def shared_runtime(app, monkeypatch):  # `app` installs the PagesManager workaround
    """Make AppTest's runs share what a real server's sessions share: one runtime, one config and
    one script cache (AppTest compiles the script afresh for every run, and CPython 3.11's parser
    is not safe to run in several threads at once; a server compiles once, under a lock)."""
    script_cache = ScriptCache()
    with patch_config_options({"global.appTest": True}):
        for script in [ROOT / "dashboard.py", *sorted((ROOT / "pages").glob("*.py"))]:
            script_cache.get_bytecode(str(script))  # compiled here, never in two threads at once
    # both places AppTest makes a cache: its pages manager's and each run's script runner's (the
    # runner compiles the page it runs; in threads that was the parser race above, now and then)
    monkeypatch.setattr(app_test_module, "ScriptCache", lambda: script_cache)
    monkeypatch.setattr(local_script_runner, "ScriptCache", lambda: script_cache)
    runtime = MagicMock(spec=Runtime)
    runtime.media_file_mgr = MediaFileManager(MemoryMediaFileStorage("/mock/media"))
    runtime.dataframe_source_mgr = DataframeSourceManager()
    runtime.cache_storage_manager = MemoryCacheStorageManager()
    monkeypatch.setattr(Runtime, "_instance", runtime)
    monkeypatch.setattr(app_test_module, "Runtime", _RuntimeName)
    monkeypatch.setattr(app_test_module, "patch_config_options", lambda options: nullcontext())
    with patch_config_options({"global.appTest": True}):
        yield


def copies(root: Path, tiny_folders) -> list[str]:
    """Three model folders no other run holds (the app caches two models at a time), so the
    sessions really load them, at the same time."""
    return [str(shutil.copytree(tiny_folders[f], root / f)) for f in ("gpt2", "llama", "qwen2")]


def snapshot(at: AppTest) -> dict:
    """What the user sees: errors, texts, next tokens and every table."""
    assert not at.exception, at.exception
    return {
        "errors": [e.value for e in at.error],
        "text": [t.value for t in at.text],
        "next tokens": next_tokens(at),
        "tables": [df.value.to_dict() for df in at.dataframe] + [t.to_dict() for t in lens_tables(at)],
    }


def compare(at: AppTest, model: str, a: str, b: str) -> dict:
    at.switch_page("pages/compare.py")
    return snapshot(submit(at, model=model, a=a, b=b, k=3))


def patch(at: AppTest) -> dict:
    at.switch_page("pages/patching.py").run()
    at.text_input(key="patching-answer").input(" Paris")
    at.text_input(key="patching-wrong").input(" Rome")
    return snapshot(at.button(key="patching-run").click().run())


def session_script(n: int, models: list[str]) -> list:
    """Session n's steps: compare, patch, switch model, compare again (each session its own order)."""
    first, second = models[n % 3], models[(n + 1) % 3]
    a, b = ((FRANCE, ITALY), (HAPPY, ANGRY))[n % 2]
    return [
        lambda at: compare(at, first, a, b),
        lambda at: patch(at) if n % 2 == 0 else compare(at, first, b, a),
        lambda at: compare(at, second, a, b),
        lambda at: compare(at, first, FRANCE, HAPPY),
    ]


def run_session(steps: list) -> list[dict]:
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=300)
    return [step(at) for step in steps]


@pytest.mark.slow
def test_eight_concurrent_sessions_see_what_a_serial_run_sees(shared_runtime, tmp_path, tiny_folders):
    serial_models = copies(tmp_path / "serial", tiny_folders)
    serial = [run_session(session_script(n, serial_models)) for n in range(8)]
    assert all(not step["errors"] and step["tables"] for run in serial for step in run)

    concurrent_models = copies(tmp_path / "concurrent", tiny_folders)
    scripts = [session_script(n, concurrent_models) for n in range(8)]
    concurrent: list[list[dict] | BaseException | None] = [None] * len(scripts)
    start = threading.Barrier(len(scripts))

    def run(i: int) -> None:
        start.wait()
        try:
            concurrent[i] = run_session(scripts[i])
        except BaseException as exc:  # noqa: BLE001  (compared below)
            concurrent[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(scripts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, (alone, together) in enumerate(zip(serial, concurrent, strict=True)):
        assert together == alone, f"session {i} saw something else when running with the others"
