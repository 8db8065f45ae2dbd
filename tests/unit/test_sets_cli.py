"""`twinlens sets`: JSON equal to the library's result, the table and example inputs, the vector
file, and each bad input as one line on stderr with exit 1 (the CLI's `main` in this process)."""

from __future__ import annotations

import json

import pytest
from bad_input_cases import SETS_CASES, sets_case_files

from lib.analyses.sets import compare_sets, prompt_sets
from lib.app.export import json_safe

A = ("You have happy emotion in yourself!", "The capital of France is", "the quick brown fox")
B = ("You have angry emotion in yourself!", "The capital of Italy is", "the lazy dog")
FAST = ("--folds", "2", "--permutations", "1", "--bootstrap", "50")




@pytest.fixture
def files(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(A) + "\n")
    (tmp_path / "b.txt").write_text("\n".join(B) + "\n")
    pairs = list(zip(A, B, strict=True))
    (tmp_path / "pairs.csv").write_text("a,b\n" + "".join(f'"{a}","{b}"\n' for a, b in pairs))
    (tmp_path / "pairs.jsonl").write_text("".join(json.dumps({"a": a, "b": b}) + "\n" for a, b in pairs))
    return tmp_path


def test_sets_json_is_the_library_result(tiny_folders, tiny_models, files, run_cli):
    out = run_cli("sets", str(files / "a.txt"), str(files / "b.txt"), "--paired", "--layer", "2",
                  "--model", str(tiny_folders["llama"]), *FAST)
    assert out.returncode == 0, out.stderr
    expected = compare_sets(tiny_models["llama"], prompt_sets(A, B, paired=True), layer=2, folds=2,
                            permutations=1, bootstrap=50)
    data = json.loads(out.stdout)
    assert data == json.loads(json.dumps(json_safe(expected.to_dict())))
    assert data["layer"] == 2 and [p["a"] for p in data["pairs"]] == list(A) and data["summary"]


def test_sets_without_the_lens(tiny_folders, tiny_models, files, run_cli):
    """--no-lens: the library's result with lens=False (no lens over the sets, the rest the same)."""
    out = run_cli("sets", str(files / "a.txt"), str(files / "b.txt"), "--paired", "--no-lens",
                  "--model", str(tiny_folders["llama"]), *FAST)
    assert out.returncode == 0, out.stderr
    expected = compare_sets(tiny_models["llama"], prompt_sets(A, B, paired=True), folds=2, permutations=1,
                            bootstrap=50, lens=False)
    data = json.loads(out.stdout)
    assert data == json.loads(json.dumps(json_safe(expected.to_dict())))
    assert data["lens"] == [] and data["settings"]["lens"] is False


@pytest.mark.parametrize("table", ["pairs.csv", "pairs.jsonl"])
def test_one_table_is_paired_and_saves_the_vector(tiny_folders, files, run_cli, table):
    path = files / "v.safetensors"
    out = run_cli("sets", str(files / table), "--model", str(tiny_folders["gpt2"]), "--layer", "1",
                  "--save-vector", str(path), *FAST)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["sets"]["paired"] and data["sets"]["b"] == list(B)
    steer = run_cli("steer", A[0], B[0], "--model", str(tiny_folders["gpt2"]), "--layer", "1",
                    "--vector-file", str(path), "--max-new-tokens", "2")
    assert steer.returncode == 0, steer.stderr


def test_a_shipped_example(tiny_folders, run_cli):
    model = str(tiny_folders["gpt2"])
    out = run_cli("sets", "--example", "True vs false statements", "--model", model, *FAST)
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)["pairs"]) == 50


@pytest.mark.parametrize("args, phrase", [
    (("a.txt",), "Give two files"),
    (("a.txt", "b.txt", "--example", "True vs false statements"), "not both"),
    (("missing.txt", "b.txt"), "Cannot read"),
    (("short.txt", "b.txt", "--paired"), "as many prompts in A as in B (A has 2, B has 3)"),
    (("gaps.txt", "b.txt"), "Set A has empty lines at row 2"),
    (("nocols.csv",), "columns 'a' and 'b'"),
    (("a.txt", "b.txt", "--layer", "9"), "Layer 9 does not exist"),
    (("a.txt", "b.txt", "--top-k", "0"), "top-k must be at least 1"),
])
def test_bad_input_is_one_line(tiny_folders, files, run_cli, args, phrase):
    (files / "short.txt").write_text("one\ntwo\n")
    (files / "gaps.txt").write_text("one\n\ntwo\n")
    (files / "nocols.csv").write_text("x,y\n1,2\n")
    paths = [str(files / a) if a.endswith((".txt", ".csv")) else a for a in args]
    out = run_cli("sets", *paths, "--model", str(tiny_folders["llama"]), *FAST)
    assert out.returncode == 1 and out.stdout == ""
    assert phrase in out.stderr and out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")


@pytest.mark.parametrize("case", SETS_CASES, ids=lambda c: c.name)
def test_the_bad_input_table(tiny_folders, tmp_path, run_cli, case):
    paired = ("--paired",) if case.paired else ()
    model = str(tiny_folders["llama"])
    out = run_cli("sets", *sets_case_files(case, tmp_path), *paired, "--model", model, *FAST)
    assert out.returncode == 1 and out.stdout == "" and out.stderr.count("\n") == 1
    assert case.refused in out.stderr
