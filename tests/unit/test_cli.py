"""`python -m lib compare`: the JSON it prints, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_cli_compare_on_a_local_folder_prints_comparison_json(tiny_folders, tiny_models):
    out = run_cli("compare", "The capital of France is", "The capital of Italy is",
                  "--model", str(tiny_folders["llama"]), "--top-k", "4", "--bos", "on")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    model = tiny_models["llama"]
    assert data["model"]["n_layers"] == model.n_layers
    assert data["model"]["d_model"] == model.d_model
    assert data["model"]["vocab_size"] == model.vocab_size
    assert data["settings"] == {"top_k": 4, "bos": "on"}
    for side in ("a", "b"):
        assert set(data[side]) >= {"text", "tokens", "token_ids", "lens", "final"}
        assert data[side]["token_ids"][0] == model.tokenizer.bos_token_id
        assert len(data[side]["lens"]) == model.n_layers + 1
        assert [e["id"] for e in data[side]["lens"][-1]] == [e["id"] for e in data[side]["final"]]
    assert len(data["distance"]["cosine"]) == model.n_layers + 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("compare", "", "x"), "empty"),
        (("compare", "   ", "x"), "empty"),
        (("compare", "a", "b", "--top-k", "0"), "top-k"),
        (("compare", "a", "b", "--model", "no-such-org/no-such-model"), "no-such-org/no-such-model"),
        (("compare", "a", "b", "--model", "/no/such/folder"), "No folder"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_one_line(args, message):
    out = run_cli(*args)
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
