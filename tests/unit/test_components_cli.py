"""`twinlens components`: the JSON it prints, and the bad-input table's component cases through
library and CLI (one plain line, exit 1)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from bad_input_cases import COMPONENT_CASES, ComponentCase, component_kwargs
from cli_run import run_cli

from lib.analyses.components import attribute_captures, patch_components
from lib.core.capture import capture
from lib.core.errors import ArchitectureError, TwinlensError

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


def test_cli_components_prints_the_attribution_and_head_grids(tiny_folders, tiny_models):
    model = tiny_models["llama"]
    out = run_cli("components", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome", "--patch", "heads",
                  "--model", str(tiny_folders["llama"]))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert (data["answer"]["token"], data["wrong"]["token"]) == ("␣Paris", "␣Rome")
    cap_a, cap_b = capture(model, FRANCE), capture(model, ITALY)
    expected = attribute_captures(model, cap_a, cap_b, answer=" Paris", wrong=" Rome")
    for side, att in (("a", expected.a), ("b", expected.b)):
        got = data[side]
        assert {"logit_diff", "linearized_logit_diff", "embed", "attn", "mlp", "heads", "bias"} <= got.keys()
        parts = got["embed"] + sum(got["attn"]) + sum(got["mlp"]) + got["bias"]
        assert parts == pytest.approx(got["linearized_logit_diff"], abs=1e-4)
        assert got["heads"] == [pytest.approx(list(row), abs=1e-5) for row in att.heads]
    patch = data["patch"]
    assert len(patch["heads"]) == model.n_layers and len(patch["heads"][0]) == model.architecture.n_heads
    assert len(patch["atp_heads"]) == model.n_layers
    assert "pearson_r" in patch["agreement"]


def test_cli_components_without_patch_prints_no_grid(tiny_folders):
    out = run_cli("components", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome",
                  "--model", str(tiny_folders["gpt2"]))
    assert out.returncode == 0, out.stderr
    assert "patch" not in json.loads(out.stdout)


@pytest.mark.parametrize("case", COMPONENT_CASES, ids=lambda c: c.name)
def test_component_bad_input_is_refused_by_the_library(case: ComponentCase, tiny_models):
    model = tiny_models["llama"]
    cap_a, cap_b = capture(model, case.a), capture(model, case.b)
    kwargs = component_kwargs(case)
    per_position = kwargs.pop("per_position")
    with pytest.raises(TwinlensError, match=case.refused):
        attribute_captures(model, cap_a, cap_b, **kwargs)
        patch_components(model, cap_a, cap_b, per_position=per_position, **kwargs)


@pytest.mark.parametrize("case", COMPONENT_CASES, ids=lambda c: c.name)
def test_component_bad_input_exits_1_with_one_line(case: ComponentCase, tiny_folders):
    out = run_cli("components", case.a, case.b, *case.options, "--model", str(tiny_folders["llama"]))
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and case.refused in lines[0], out.stderr


def test_a_family_that_does_not_say_its_heads_is_refused_plainly(tiny_models, monkeypatch):
    model = tiny_models["gpt2"]
    monkeypatch.setattr(model, "architecture", replace(model.architecture, n_heads=None))
    cap_a, cap_b = capture(model, FRANCE), capture(model, ITALY)
    with pytest.raises(ArchitectureError, match="how many attention heads"):
        attribute_captures(model, cap_a, cap_b, answer=10, wrong=11)
    with pytest.raises(ArchitectureError, match="how many attention heads"):
        patch_components(model, cap_a, cap_b, answer=10, wrong=11)


def test_results_round_trip_through_plain_data(tiny_models):
    model = tiny_models["qwen2"]
    cap_a, cap_b = capture(model, FRANCE), capture(model, ITALY)
    attribution = attribute_captures(model, cap_a, cap_b, answer=10, wrong=11)
    assert type(attribution).from_dict(json.loads(json.dumps(attribution.to_dict()))) == attribution
    patching = patch_components(model, cap_a, cap_b, answer=10, wrong=11)
    assert type(patching).from_dict(json.loads(json.dumps(patching.to_dict()))) == patching
