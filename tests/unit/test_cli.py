"""`twinlens compare` (`python -m lib compare`): the JSON it prints, and one-line errors with a
non-zero exit. A few runs are real processes (the installed command, `python -m lib`); the rest
run the same `main` in-process."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from cli_run import run_cli, run_cli_process


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


def test_installed_twinlens_command_prints_the_same_json_as_python_m_lib(tiny_folders):
    """`pip install -e .` (make's first step) installs the package as `twinlens` with its command."""
    command = shutil.which("twinlens", path=str(Path(sys.executable).parent))
    assert command is not None, "the twinlens command is not installed in this environment"
    args = ("compare", "The capital of France is", "The capital of Italy is",
            "--model", str(tiny_folders["gpt2"]), "--top-k", "3")
    installed, checkout = run_cli_process(*args, command=(command,)), run_cli(*args)
    assert installed.returncode == checkout.returncode == 0, installed.stderr
    assert json.loads(installed.stdout) == json.loads(checkout.stdout)


def test_the_package_imports_as_twinlens_with_its_entry_points():
    code = (
        "import twinlens; print(twinlens.__version__, "
        "twinlens.Site.parse('blocks.2.hook_resid_post').residual)"
    )
    out = run_cli_process("-c", code, command=(sys.executable,))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[1] == "3"
