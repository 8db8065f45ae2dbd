"""The embedded SmolLM2-135M: real predictions, the lens invariant, and its cached copy."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from lib.analyses.common.lens import lens_column
from lib.analyses.compare import compare_prompts
from lib.core.capture import capture


def test_capital_of_france_predicts_paris(real_model):
    c = compare_prompts(real_model, "The capital of France is", "The capital of Italy is", top_k=5)
    assert c.a.final[0].token == "␣Paris"
    assert c.b.final[0].token == "␣Rome"
    assert c.model["n_layers"] == 30 and c.model["d_model"] == 576 and c.model["vocab_size"] == 49152


def test_lens_last_layer_reproduces_the_embedded_model(real_model):
    cap = capture(real_model, "Claire and Mary went to the shops, then Mary gave a bottle of milk to")
    last = lens_column(real_model, cap.residual, -1, k=20)[-1]
    own = torch.softmax(cap.final_logits, -1).topk(20)
    assert [t.id for t in last.top] == own.indices.tolist()
    assert max(abs(t.prob - p) for t, p in zip(last.top, own.values.tolist(), strict=True)) <= 1e-4


def test_paris_shows_only_at_the_final_layer(real_model):
    c = compare_prompts(real_model, "The capital of France is", "The capital of Italy is", top_k=1)
    layers_with_paris = [l for l, row in enumerate(c.a.lens) if row[0].token == "␣Paris"]
    assert layers_with_paris and layers_with_paris[-1] == real_model.n_layers


def test_same_prefix_gives_zero_distance_at_layer_zero(real_model):
    c = compare_prompts(real_model, "You have happy emotion in yourself!",
                        "You have angry emotion in yourself!", top_k=3)
    assert c.distance.cosine[0] == 0.0
    assert c.distance.relative_l2[0] == 0.0
    assert max(c.distance.cosine) > 0.01


def test_default_model_cache_is_rebuilt_when_damaged(tmp_path, monkeypatch):
    from lib.core import models

    built = models.cache_dir() / models._CACHE_DIR_NAME  # the session's copy (built once by real_model)
    monkeypatch.setenv("TWINLENS_CACHE", str(tmp_path))
    if models._cache_is_complete(built):  # start from a copy of it: the two rebuilds below are the test
        shutil.copytree(built, tmp_path / models._CACHE_DIR_NAME)
    folder = models.ensure_default_model()
    manifest = json.loads((folder / "twinlens-manifest.json").read_text())
    weights = folder / "model.safetensors"
    assert manifest["sizes"]["model.safetensors"] == weights.stat().st_size
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building-")]

    with open(weights, "r+b") as f:  # a partial copy: truncated weights
        f.truncate(weights.stat().st_size // 2)
    assert not models._cache_is_complete(folder)
    loaded = models.load_model("default")
    assert weights.stat().st_size == manifest["sizes"]["model.safetensors"]
    # built during the load, it is still the one model every later load of the default shares
    # (a new machine's first run: the nnsight twin must wrap this very module)
    assert models.load_model("default") is loaded
    assert models.load_model("default", backend="nnsight").model is loaded.model
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".building-")]

    with open(weights, "r+b") as f:  # same size, garbage header: detected when loading
        f.write(b"\xff" * 64)
    again = models.load_model("default")
    assert models.load_model("default") is again  # registered under the rebuilt copy's identity
    ids = torch.tensor([[504, 3575]])
    with torch.inference_mode():
        assert torch.equal(loaded.model(ids).logits, again.model(ids).logits)


def test_cli_compare_prints_the_documented_json(tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-m", "lib", "compare", "The capital of France is", "The capital of Italy is",
         "--top-k", "3"],
        cwd=root, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=600,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["a"]["final"][0]["token"] == "␣Paris"
    assert len(data["a"]["lens"]) == data["model"]["n_layers"] + 1 == 31
    assert all(len(row) == 3 for row in data["b"]["lens"])
    assert len(data["distance"]["cosine"]) == len(data["distance"]["relative_l2"]) == 31
    assert "Traceback" not in out.stderr
