"""The lens choice with two models (each model read with its own lens of the chosen kind; a model
without one is read with the logit lens and the app says so in one sentence), in exports, and on the
command line (`twinlens patch --lens`, `twinlens compare-models --lens`: one line on stderr, exit 1
for a model without that lens)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from lib.analyses.common import lenses
from lib.analyses.common.lens import lens_column
from lib.analyses.diff import top_token_diff
from lib.analyses.model_compare import compare_model_captures
from lib.analyses.patching import patched_lens
from lib.app import lens_choice
from lib.app.request import Request
from lib.core.capture import capture
from lib.core.errors import LensError
from lib.core.models import load_model

PROMPT = "The capital of France is"
A, B = "The capital of France is", "The capital of Italy is"
JACOBIAN = "Jacobian lens, fitted on 9 prompts"


@pytest.fixture
def llama(tiny_models, tmp_path, monkeypatch):
    """The tiny Llama with a random Jacobian lens in a stand-in shipped folder (no other model has one)."""
    monkeypatch.setattr(lenses, "SHIPPED", tmp_path)
    loaded = tiny_models["llama"]
    g = torch.Generator().manual_seed(5)
    d = loaded.d_model
    lenses.save_jacobian(tmp_path / "tiny" / lenses.JACOBIAN_FILE,
                         {r: torch.eye(d) + torch.randn(d, d, generator=g)
                          for r in range(1, loaded.n_layers)}, n_prompts=9, loaded=loaded)
    (tmp_path / "tiny" / lenses.CARD_FILE).write_text(json.dumps({"model": loaded.name}))
    return loaded


@pytest.fixture
def partner(partner_folders):
    return load_model(str(partner_folders["llama-seed1"]))


def ids(tops):
    return [[t.id for t in top] for top in tops]


def test_two_models_each_read_with_their_own_lens(llama, partner):
    cap1, cap2 = capture(llama, PROMPT), capture(partner, PROMPT)
    mixed = compare_model_captures(llama, partner, cap1, cap2, top_k=3, lens="jacobian", lens2="logit")
    jacobian = lens_column(llama, cap1.residual, -1, 3, "jacobian")
    plain = lens_column(partner, cap2.residual, -1, 3)
    assert ids(mixed.a.lens) == ids(c.top for c in jacobian)
    assert ids(mixed.b.lens) == ids(c.top for c in plain)
    assert mixed.settings["lens_caption"] == JACOBIAN and mixed.settings["lens2_caption"] == "logit lens"
    assert ids(mixed.a.lens) != ids(compare_model_captures(llama, partner, cap1, cap2, top_k=3).a.lens)
    with pytest.raises(LensError, match="^twinlens has no Jacobian lens for .*llama-seed1;"):
        compare_model_captures(llama, partner, cap1, cap2, top_k=3, lens="jacobian")


def test_top_token_diff_reads_each_model_with_its_own_lens(llama, partner):
    cap1, cap2 = capture(llama, PROMPT), capture(partner, PROMPT)
    diff = top_token_diff(llama, cap1, cap2, top_k=3, loaded_b=partner, lens="jacobian", lens_b="logit")
    assert [[t.id for t in layer.top_a] for layer in diff.layers] == ids(
        c.top for c in lens_column(llama, cap1.residual, -1, 3, "jacobian"))
    assert [[t.id for t in layer.top_b] for layer in diff.layers] == ids(
        c.top for c in lens_column(partner, cap2.residual, -1, 3))
    assert (diff.to_dict()["lens_a"], diff.to_dict()["lens_b"]) == (JACOBIAN, "logit lens")


def test_lens_uses_fall_back_per_model_in_two_models_mode_only(llama, partner, tiny_models):
    pair = Request(mode="models", model="llama", model2="llama-seed1", lens="jacobian")
    first, second = lens_choice.lens_uses(pair, llama, partner)
    assert (first.kind, first.provenance, first.missing) == ("jacobian", JACOBIAN, "")
    assert first.source == lenses.JACOBIAN_FILE and first.n_prompts == 9
    assert second.kind == "logit" and second.chosen == "jacobian"
    assert second.missing == (f"twinlens has no Jacobian lens for {partner.name}, so model 2 is read with "
                              "the logit lens.")
    assert lens_choice.alike((first, second), (llama, partner))[0].kind == "logit"  # KL: like with like
    assert lens_choice.alike((first, first), (llama, llama)) == (first, first)
    with pytest.raises(LensError):  # one model: no fallback, one sentence
        lens_choice.lens_uses(Request(lens="jacobian"), tiny_models["gpt2"], tiny_models["gpt2"])


def test_exports_name_the_lens(llama, partner):
    pair = Request(mode="models", lens="jacobian")
    uses = lens_choice.lens_uses(pair, llama, partner)
    frame = pd.DataFrame({"prompt": ["model 1", "model 2"], "x": [1, 2]})
    assert lens_choice.tagged(frame, uses, ("model 1", "model 2"), side="prompt")["lens"].tolist() == [
        JACOBIAN, "logit lens"]
    assert lens_choice.tagged(frame, uses, ("model 1", "model 2"))["lens"].tolist() == [
        f"model 1: {JACOBIAN}; model 2: logit lens"] * 2
    assert lens_choice.tagged(frame, uses[0])["lens"].tolist() == [JACOBIAN] * 2
    export = lens_choice.lens_export(uses, ("model 1", "model 2"))
    assert export["model 1"]["provenance"] == JACOBIAN and export["model 2"]["kind"] == "logit"
    assert export["model 2"]["missing"].startswith("twinlens has no Jacobian lens")


def test_cli_patch_prints_b_after_the_patch_read_with_the_chosen_lens(llama, tiny_folders, run_cli):
    folder = str(tiny_folders["llama"])
    last = capture(llama, B).n_tokens - 1
    out = run_cli("patch", A, B, "--lens", "jacobian", "--cell", f"1,{last}", "--model", folder)
    assert out.returncode == 0, out.stderr
    after = json.loads(out.stdout)["lens_after_patch"]
    expected = patched_lens(llama, A, B, 1, last, lens="jacobian")
    assert (after["lens_kind"], after["lens_caption"]) == ("jacobian", JACOBIAN)
    assert [[t["id"] for t in top] for top in after["lens"]] == ids(expected.lens)
    assert ids(expected.lens) != ids(patched_lens(llama, A, B, 1, last).lens)
    plain = json.loads(run_cli("patch", A, B, "--model", folder).stdout)
    assert "lens_after_patch" not in plain  # without --lens or --cell, as before


@pytest.mark.parametrize(("args", "start"), [
    (("patch", A, B, "--lens", "tuned"), "twinlens has no tuned lens for"),
    (("patch", A, B, "--lens", "jacobian", "--model", "{gpt2}"), "twinlens has no Jacobian lens for"),
    (("patch", A, B, "--lens", "jacobian", "--cell", "one,two"), "--cell takes LAYER,POSITION"),
    (("compare-models", PROMPT, "--model2", "{seed1}", "--lens", "jacobian"),
     "twinlens has no Jacobian lens for"),
])
def test_cli_a_model_without_the_lens_is_one_line_and_exit_1(llama, tiny_folders, partner_folders, run_cli,
                                                             args, start):
    names = {"{gpt2}": str(tiny_folders["gpt2"]), "{seed1}": str(partner_folders["llama-seed1"])}
    args = tuple(names.get(a, a) for a in args)
    if "--model" not in args:
        args += ("--model", str(tiny_folders["llama"]))
    out = run_cli(*args)
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and start in lines[0]
