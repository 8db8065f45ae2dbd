"""`twinlens circuit`: the JSON it prints equals the library's result, and the bad-input table's
circuit cases are refused by the library and by the CLI (one plain line, exit 1)."""

from __future__ import annotations

import json

import pytest
from bad_input_cases import CIRCUIT_CASES, ComponentCase, circuit_kwargs
from cli_run import run_cli

from lib.analyses.circuit import Circuit, find_circuit
from lib.core.capture import capture
from lib.core.errors import TwinlensError

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


def test_cli_circuit_prints_what_the_library_finds(tiny_folders, tiny_models):
    out = run_cli("circuit", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome", "--edges", "7",
                  "--model", str(tiny_folders["llama"]))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    model = tiny_models["llama"]
    cap_a, cap_b = capture(model, FRANCE), capture(model, ITALY)
    expected = find_circuit(model, cap_a, cap_b, answer=" Paris", wrong=" Rome", edges=7)
    assert (data["answer"]["token"], data["wrong"]["token"]) == ("␣Paris", "␣Rome")
    assert data["size"] == 7 and data["granularity"] == "heads" and data["ig_steps"] == 1
    assert [(e["source"], e["target"]) for e in data["edges"][:7]] == [
        (e.source, e.target) for e in expected.circuit_edges()]
    assert data["faithfulness"] == pytest.approx(expected.faithfulness, abs=1e-6)
    assert Circuit.from_dict(data) == Circuit.from_dict(json.loads(json.dumps(expected.to_dict())))


def test_cli_circuit_coarse_with_eap_ig(tiny_folders):
    out = run_cli("circuit", FRANCE, ITALY, "--answer", " Paris", "--wrong", " Rome", "--coarse",
                  "--ig-steps", "3", "--share", "0.5", "--model", str(tiny_folders["gpt2"]))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["granularity"] == "layers" and data["ig_steps"] == 3 and "EAP-IG with 3 steps" in data["note"]
    assert not any(node["kind"] == "head" for node in data["nodes"])


@pytest.mark.parametrize("case", CIRCUIT_CASES, ids=lambda c: c.name)
def test_circuit_bad_input_is_refused_by_the_library(case: ComponentCase, tiny_models):
    model = tiny_models["llama"]
    with pytest.raises(TwinlensError, match=case.refused):
        find_circuit(model, capture(model, case.a), capture(model, case.b), **circuit_kwargs(case))


@pytest.mark.parametrize("case", CIRCUIT_CASES, ids=lambda c: c.name)
def test_circuit_bad_input_exits_1_with_one_line(case: ComponentCase, tiny_folders):
    out = run_cli("circuit", case.a, case.b, *case.options, "--model", str(tiny_folders["llama"]))
    assert out.returncode == 1 and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and case.refused in lines[0], out.stderr


def test_remote_circuit_is_refused_before_anything_is_sent(tiny_folders):
    out = run_cli("circuit", FRANCE, ITALY, "--remote", "--model", str(tiny_folders["llama"]))
    assert out.returncode == 1 and "whole residual stream" in out.stderr
