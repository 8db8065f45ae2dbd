"""The lanes of the suite: `make test-fast` runs the per-family tests on a few families
($TWINLENS_TEST_FAMILIES, tests/tiny.py `lane_families`), `make test` on every one."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from _pytest.mark.expression import Expression
from tiny import EXTRA_FAMILIES, FAMILIES, lane_families

ROOT = Path(__file__).resolve().parents[2]


def test_no_choice_is_every_family():
    assert lane_families(FAMILIES, "") == FAMILIES and lane_families(EXTRA_FAMILIES, "") == EXTRA_FAMILIES


def test_a_choice_keeps_each_list_in_its_order():
    chosen = "mamba, gemma2,gpt2,qwen3"
    assert lane_families(FAMILIES, chosen) == ("gpt2", "gemma2")
    assert lane_families(EXTRA_FAMILIES, chosen) == ("qwen3", "mamba")


def test_a_name_that_is_no_family_is_refused():
    with pytest.raises(ValueError, match="names no tiny family: lama"):
        lane_families(FAMILIES, "gpt2,lama")


def test_make_test_fast_names_families_of_both_lists():
    """The Makefile's choice runs some of the main families and some of the extra ones (an empty
    list would leave the per-family tests with nothing to run)."""
    line = next(x for x in (ROOT / "Makefile").read_text().splitlines() if x.startswith("FAST_FAMILIES"))
    chosen = line.split("=", 1)[1].strip()
    assert lane_families(FAMILIES, chosen) and lane_families(EXTRA_FAMILIES, chosen)
    assert len(lane_families(FAMILIES, chosen)) < len(FAMILIES)


def test_make_test_runs_every_family_whatever_the_shell_exported():
    """`make test` empties $TWINLENS_TEST_FAMILIES on its own command line, so a variable left in a
    developer's shell cannot thin the whole suite (CI runs `make test`)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    recipe = lines[next(i for i, x in enumerate(lines) if x.startswith("test:")) + 1]
    assert "TWINLENS_TEST_FAMILIES= " in recipe and "pytest" in recipe


def test_make_matrix_runs_every_family_whatever_the_shell_exported(monkeypatch, tmp_path):
    """The support matrix's test run empties the variable too: a thinned run would write "not run"
    rows into docs/support_matrix.md."""
    import support_matrix

    seen = {}
    monkeypatch.setenv("TWINLENS_TEST_FAMILIES", "gpt2")
    monkeypatch.setattr(support_matrix.subprocess, "run",
                        lambda command, cwd, env: seen.update(env) or subprocess.CompletedProcess(command, 0))
    assert support_matrix.run_tests(tmp_path / "report.xml") == 0
    assert seen["TWINLENS_TEST_FAMILIES"] == "" and seen["HF_HUB_OFFLINE"] == "1"


def test_the_variable_reaches_the_family_fixture(tmp_path):
    """Collected with TWINLENS_TEST_FAMILIES=llama, a per-family test runs once; without it, once
    per family."""
    def collected(env_value: str | None) -> list[str]:
        import os

        env = {k: v for k, v in os.environ.items() if k != "TWINLENS_TEST_FAMILIES"}
        if env_value is not None:
            env["TWINLENS_TEST_FAMILIES"] = env_value
        out = subprocess.run(
            [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
             "tests/unit/test_steering.py::test_alpha_zero_is_the_unsteered_run"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        ).stdout
        return [x for x in out.splitlines() if "::" in x]

    assert collected("llama") == ["tests/unit/test_steering.py::test_alpha_zero_is_the_unsteered_run[llama]"]
    assert len(collected(None)) == len(FAMILIES)


def _recipe(target: str) -> str:
    """The command line of a Makefile target (the line after `target:`)."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    return lines[next(i for i, x in enumerate(lines) if x.startswith(f"{target}:")) + 1]


def _selects(command: str, markers: set[str]) -> bool:
    """Whether `command`'s `-m "…"` expression picks a test that carries `markers` (no `-m`: every
    test), evaluated as pytest evaluates it."""
    found = re.search(r'-m "([^"]*)"', command)
    return found is None or Expression.compile(found.group(1)).evaluate(lambda name, **_: name in markers)


def test_make_test_fast_leaves_the_slow_tests_out_and_make_test_runs_them():
    """`slow` (tests/conftest.py) thins only the fast lane: make test-fast deselects a slow test
    whatever else it carries, make test (and pytest.ini's own options) select it."""
    fast, everything = _recipe("test-fast"), _recipe("test")
    assert _selects(fast, set()) and _selects(fast, {"family"})
    assert not _selects(fast, {"slow"}) and not _selects(fast, {"slow", "family"})
    assert not _selects(fast, {"real_model"}) and not _selects(fast, {"browser"})
    addopts = (ROOT / "pytest.ini").read_text()
    for command in (everything, addopts):
        assert _selects(command, {"slow"}) and _selects(command, {"slow", "real_model", "family"})


def test_slow_is_a_registered_marker(pytestconfig):
    assert any(line.startswith("slow:") for line in pytestconfig.getini("markers"))


PLANTED = '''
import pytest

from lib.core import models

ORIGINAL = models.ensure_default_model


def test_unmarked_loads_the_embedded_model():
    models.load_model("default")


@pytest.mark.real_model
def test_marked_is_left_alone():
    assert models.ensure_default_model is ORIGINAL
'''


def test_an_unmarked_test_that_loads_the_embedded_model_fails_naming_the_fix(tmp_path):
    """tests/lane_guard.py on a planted file: the unmarked test that asks for "default" fails with
    the message (before anything is unpacked), the marked one finds the real function."""
    import os

    (tmp_path / "test_planted.py").write_text(PLANTED)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]),
           "TWINLENS_CACHE": str(tmp_path / "cache")}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "lane_guard", "-p", "no:cacheprovider", "-q", "--tb=line",
         str(tmp_path / "test_planted.py")],
        cwd=ROOT, env=env, capture_output=True, text=True,
    ).stdout
    assert "1 failed, 1 passed" in out, out
    assert "::test_unmarked_loads_the_embedded_model loads the embedded model without the real_model" in out
    assert not (tmp_path / "cache").exists()  # nothing was unpacked
