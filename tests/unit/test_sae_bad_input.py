"""The SAE rows of the bad-input table (tests/bad_input_cases.py) through the library and the CLI:
one plain SettingsError / one line on stderr and exit 1 each."""

from __future__ import annotations

import json

import pytest
from bad_input_cases import GOOD, SAE_CASE_NAMES, sae_cases  # noqa: F401  (fixture)

from lib.analyses.features import features_of_prompts
from lib.app.cli import main
from lib.core.errors import SettingsError


@pytest.mark.parametrize("name", SAE_CASE_NAMES)
def test_library_refuses_bad_sae(tiny_models, sae_cases, name):  # noqa: F811
    case = sae_cases[name]
    with pytest.raises(SettingsError, match=case.refused) as info:
        features_of_prompts(tiny_models["llama"], GOOD, GOOD, layer=case.layer, sae_path=case.path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", SAE_CASE_NAMES)
def test_cli_refuses_bad_sae_in_one_line(tiny_folders, sae_cases, name, capsys):  # noqa: F811
    case = sae_cases[name]
    args = ["features", GOOD, GOOD, "--model", str(tiny_folders["llama"]), "--sae", case.path]
    if case.layer is not None:
        args += ["--layer", str(case.layer)]
    assert main(args) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1
    assert out.err.startswith("error: ") and case.refused in out.err


def test_cli_prints_the_features_json(tiny_folders, tiny_models, tmp_path, run_cli):
    """`twinlens features` end to end (the command's `main`), with an SAE written for the tiny Llama."""
    import torch

    from lib.analyses.common.sae import save_saelens

    llama = tiny_models["llama"]
    g = torch.Generator().manual_seed(0)
    d = llama.d_model
    save_saelens(tmp_path / "sae", W_enc=torch.randn(d, 32, generator=g), b_enc=torch.zeros(32),
                 W_dec=torch.randn(32, d, generator=g), b_dec=torch.zeros(d), architecture="topk", k=4,
                 hook_name="blocks.0.hook_resid_post", model_name=llama.name)
    out = run_cli("features", GOOD, "The capital of Italy is", "--model", str(tiny_folders["llama"]),
                  "--sae", str(tmp_path / "sae"), "--top", "3")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["layer"] == 1 and data["sae"]["hook_name"] == "blocks.0.hook_resid_post"
    assert data["sae"]["d_sae"] == 32 and set(data["sae"]["fvu"]) == {"a", "b"}
    assert 1 <= len(data["a"]) <= 3 and set(data["a"][0]) >= {"feature", "activation", "label"}
    activations = [row["activation"] for row in data["a"]]
    assert activations == sorted(activations, reverse=True) and all(a > 0 for a in activations)
    assert {"shared", "only_a", "only_b"} <= set(data)
