"""Fixtures shared by every test: tiny models built once per session, and the embedded model."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["TWINLENS_DEBUG"] = "1"  # bugs raise in tests; tests of the plain message unset it
# Saved comparisons go to a throw-away folder, never to the user's ~/.local/share/twinlens.
os.environ["TWINLENS_DATA"] = tempfile.mkdtemp(prefix="twinlens-test-data-")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from suite_summary import skip_summary  # noqa: E402

pytest_plugins = ["lane_guard"]  # a test that loads the embedded model is marked real_model
from tiny import CORPUS, FAMILIES, build_tiny_model, lane_families, make_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return make_tokenizer()


@pytest.fixture(scope="session")
def tiny_folders(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """family → folder holding a saved tiny model of that family."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {f: build_tiny_model(f, root / f, tokenizer=tiny_tokenizer) for f in FAMILIES}


@pytest.fixture(scope="session")
def tiny_models(tiny_folders):
    """family → LoadedModel, loaded through load_model(folder) like a user's own folder."""
    from lib.core.models import load_model

    return {f: load_model(str(path)) for f, path in tiny_folders.items()}


@pytest.fixture(scope="session")
def partner_folders(tmp_path_factory, tiny_tokenizer) -> dict[str, Path]:
    """Second models for model-vs-model tests: the tiny Llama's config with other weights
    ("llama-seed1"), a GPT-2 with 2 layers instead of 3 ("gpt2-shallow"), and a GPT-2 whose
    tokenizer was trained on another text, so its ids differ ("gpt2-other-tokenizer")."""
    root = tmp_path_factory.mktemp("partner-models")
    other_tokenizer = make_tokenizer(corpus=CORPUS[3:])
    return {
        "llama-seed1": build_tiny_model("llama", root / "llama-seed1", seed=1, tokenizer=tiny_tokenizer),
        "gpt2-shallow": build_tiny_model("gpt2", root / "gpt2-shallow", tokenizer=tiny_tokenizer, n_layer=2),
        "gpt2-other-tokenizer": build_tiny_model("gpt2", root / "gpt2-other", tokenizer=other_tokenizer),
    }


@pytest.fixture(params=lane_families(FAMILIES))
def family_model(request, tiny_models):
    return tiny_models[request.param]


def pytest_configure(config):
    config.addinivalue_line("markers", "family: runs once per model family; `make matrix` reports these")
    config.addinivalue_line("markers", "real_model: uses the embedded SmolLM2")
    config.addinivalue_line("markers", "browser: drives Chromium (tests/e2e)")
    config.addinivalue_line("markers", "slow: a page test that takes 3 s or more of one core on its own "
                                       "(pytest --durations=0, one process); make test runs it, "
                                       "make test-fast does not")


LANE_ORDER = ("integration", "e2e", "app", "unit")  # slowest files first: two workers end together


def pytest_collection_modifyitems(items):
    """Lanes to pick with `-m`: every test on `family_model` counts for the support matrix
    (`family`); tests of the embedded model are `real_model`, Chromium tests `browser`.

    The embedded model's and the browser's test files run first: `make test`'s workers take whole
    files in order, and a long file handed out last would leave one worker running alone."""
    items.sort(key=lambda item: next((i for i, lane in enumerate(LANE_ORDER) if lane in item.path.parts),
                                     len(LANE_ORDER)))
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "family_model" in fixtures:
            item.add_marker(pytest.mark.family)
        if "real_model" in fixtures or "integration" in item.path.parts:
            item.add_marker(pytest.mark.real_model)
        if "e2e" in item.path.parts:
            item.add_marker(pytest.mark.browser)


def pytest_terminal_summary(terminalreporter):
    """The suite's last lines say how many tests were skipped and why (e.g. no Chromium)."""
    lines = skip_summary(terminalreporter.stats.get("skipped", []))
    if lines:
        terminalreporter.section("skipped")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def real_model():
    """The embedded SmolLM2 (built into the cache on first use)."""
    from lib.core.models import load_model

    return load_model("default")


@pytest.fixture
def run_cli(monkeypatch):
    """`twinlens ARGS…` run in this process (tests/cli_run.py `run_cli`) with the plain messages a
    user sees (TWINLENS_DEBUG unset) → CliResult(returncode, stdout, stderr)."""
    from cli_run import run_cli as run

    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)
    return run
