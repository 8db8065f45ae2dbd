"""`twinlens generate` and `twinlens steer`: the JSON shapes of the issue, one-line errors (the CLI's
`main` in this process; tests/unit/test_steer_bad_input.py runs `python -m lib` itself)."""

from __future__ import annotations

import json

A, B = "The capital of France is", "The capital of Italy is"




def test_generate_json(tiny_folders, tiny_models, run_cli):
    from lib.analyses.common.decode import GenerationSettings
    from lib.analyses.generation import continue_prompt

    out = run_cli("generate", A, B, "--model", str(tiny_folders["gpt2"]), "--max-new-tokens", "5")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    for side, text in (("a", A), ("b", B)):
        expected = continue_prompt(tiny_models["gpt2"], text, settings=GenerationSettings(5))
        assert data[side]["prompt_token_ids"] == list(expected.prompt_token_ids)
        assert data[side]["continuation"]["token_ids"] == list(expected.token_ids)
        assert data[side]["continuation"]["text"] == expected.text


def test_steer_json_and_vector_file(tiny_folders, tmp_path, run_cli):
    model = str(tiny_folders["llama"])
    path = tmp_path / "v.safetensors"
    out = run_cli("steer", A, B, "--model", model, "--layer", "2", "--alpha", "3", "--max-new-tokens", "4",
                  "--save-vector", str(path))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["layer"] == 2 and data["alpha"] == 3.0
    for name in ("unsteered", "steered"):
        assert set(data[name]) >= {"token_ids", "text"} and len(data[name]["token_ids"]) <= 4
    assert set(data["effects"]["logit_diff"]) >= {"unsteered", "steered"} and data["effects"]["kl"] > 0
    again = run_cli("steer", A, B, "--model", model, "--layer", "2", "--alpha", "3", "--max-new-tokens", "4",
                    "--vector-file", str(path), "--vector", "last")
    assert json.loads(again.stdout)["steered"] == data["steered"]
    wrong_layer = run_cli("steer", A, B, "--model", model, "--layer", "1", "--vector-file", str(path))
    assert wrong_layer.returncode == 1 and "not layer 1" in wrong_layer.stderr


def test_steer_sweep_json(tiny_folders, run_cli):
    out = run_cli("steer", A, B, "--model", str(tiny_folders["llama"]), "--layer", "0", "--sweep",
                  "--alphas", "1,2")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data["kl"]) == 4 and data["alphas"] == [1.0, 2.0] and "layer" in data["reading"]
