"""Fixtures for AppTest page tests (helpers in app_helpers.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from app_helpers import app  # noqa: E402,F401  (the fixture)

from lib.analyses.common import lenses  # noqa: E402


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
