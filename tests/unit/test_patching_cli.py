"""`twinlens patch`: the JSON it prints, and one-line errors with a non-zero exit."""

from __future__ import annotations

import json

import pytest
from cli_run import run_cli

from lib.analyses.patching import patch_residual

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


def test_cli_patch_prints_the_grid_json(tiny_folders, tiny_models):
    model = tiny_models["gpt2"]
    expected = patch_residual(model, FRANCE, ITALY)  # gpt2's tiny model predicts different tokens for A and B
    out = run_cli("patch", FRANCE, ITALY, "--model", str(tiny_folders["gpt2"]))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"metric", "answer", "wrong", "tokens_b", "effect", "raw", "note"} <= data.keys()
    assert data["answer"] == expected.answer.to_dict() and data["wrong"] == expected.wrong.to_dict()
    assert data["tokens_b"] == list(expected.tokens_b)
    assert data["note"] is None
    assert len(data["effect"]) == len(data["raw"]) == model.n_layers + 1
    for got, want in zip(data["effect"], expected.effect, strict=True):
        assert got == pytest.approx(list(want), abs=1e-5)
    assert data["metric"]["a"] == pytest.approx(expected.metric_a, abs=1e-5)


def test_cli_patch_uses_the_named_tokens(tiny_folders):
    folder = str(tiny_folders["llama"])
    out = run_cli("patch", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome", "--model", folder)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["answer"]["token"], data["wrong"]["token"]) == ("␣Paris", "␣Rome")


def test_cli_patch_scores_whole_words_when_asked(tiny_folders, tiny_models):
    folder, model = str(tiny_folders["llama"]), tiny_models["llama"]
    expected = patch_residual(model, FRANCE, ITALY, answer=" Paris", wrong=" Rome", score="word")
    out = run_cli("patch", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome", "--score", "word",
                  "--model", folder)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["metric"]["score"] == "word"
    assert data["metric"]["a"] == pytest.approx(expected.metric_a, abs=1e-5)
    for got, want in zip(data["raw"], expected.raw, strict=True):
        assert got == pytest.approx(list(want), abs=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("patch", "", ITALY), "empty"),
        (("patch", ITALY, ITALY), "Name the answer and wrong tokens"),
        (("patch", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Paris"), "same"),
    ],
)
def test_cli_patch_bad_input_exits_1_with_one_line(args, message, tiny_folders):
    out = run_cli(*args, "--model", str(tiny_folders["llama"]))
    assert out.returncode == 1
    assert out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr


def test_cli_patch_without_prompt_b_is_a_usage_error():
    out = run_cli("patch", FRANCE)
    assert out.returncode == 2 and "prompt_b" in out.stderr
