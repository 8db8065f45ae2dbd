"""Fixtures for AppTest page tests (helpers in app_helpers.py)."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from app_helpers import app  # noqa: E402,F401  (the fixture)

from lib.analyses.common import lenses  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def components_scanned_once():
    """Every new AppTest scans each installed package's metadata for Streamlit components (about
    0.3 s, before its first run); a server does it once at start. The installed packages do not
    change during the suite, so the scan runs once and each AppTest registers what it found."""
    from streamlit.components.v2 import manifest_scanner

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_scanner, "scan_component_manifests",
                      functools.cache(manifest_scanner.scan_component_manifests))
        yield


@pytest.fixture
def llama_with_lens(tiny_models, tiny_folders, tmp_path, monkeypatch):
    """The tiny Llama with a shipped Jacobian lens (J = I + noise, "fitted on 9 prompts") in a
    throw-away lens folder: (the loaded model, its folder as a model spec)."""
    monkeypatch.setattr(lenses, "SHIPPED", tmp_path)
    loaded = tiny_models["llama"]
    g = torch.Generator().manual_seed(5)
    d = loaded.d_model
    matrices = {r: torch.eye(d) + torch.randn(d, d, generator=g) for r in range(1, loaded.n_layers)}
    lenses.save_jacobian(tmp_path / "tiny" / lenses.JACOBIAN_FILE, matrices, n_prompts=9, loaded=loaded)
    (tmp_path / "tiny" / lenses.CARD_FILE).write_text(json.dumps({"model": loaded.name}))
    return loaded, str(tiny_folders["llama"])
