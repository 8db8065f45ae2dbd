"""The bad-input table (tests/bad_input_cases.py) through `python -m lib`: every refusal is one line
on stderr and exit 1 (no traceback, nothing on stdout); unusual prompts give their JSON."""

from __future__ import annotations

import json

import pytest
from bad_input_cases import GOOD, HTML, MODEL_CASE_NAMES, PROMPT_CASES, model_cases  # noqa: F401  (fixture)
from cli_run import CliResult, run_cli, run_cli_process

from lib.app.cli import main


def assert_refused(out: CliResult, phrase: str) -> None:
    stderr = out.stderr
    assert out.returncode == 1, stderr
    assert out.stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], stderr


@pytest.fixture(scope="module")
def tiny(tiny_folders) -> str:
    return str(tiny_folders["gpt2"])


# An argument cannot hold a NUL (the OS ends it there), so that case runs `main` in-process.
@pytest.mark.parametrize("case", [c for c in PROMPT_CASES if c.refused and "\x00" not in c.text],
                         ids=lambda c: c.name)
def test_cli_refuses_bad_prompt_in_one_line(tiny, case):
    assert_refused(run_cli("compare", case.text, GOOD, "--model", tiny), case.refused)


def test_cli_refuses_nul_in_a_prompt(tiny, capsys):
    assert main(["compare", "a\x00b", GOOD, "--model", tiny]) == 1
    out = capsys.readouterr()
    assert out.out == "" and out.err.count("\n") == 1 and "NUL" in out.err


def test_cli_refuses_prompt_bytes_that_are_not_utf8(tiny):
    assert_refused(run_cli_process("compare", b"caf\xe9 au lait", GOOD, "--model", tiny), "not UTF-8")


@pytest.mark.parametrize("name", MODEL_CASE_NAMES)
def test_cli_refuses_bad_model_in_one_line(model_cases, name):  # noqa: F811
    case = model_cases[name]
    assert_refused(run_cli("compare", GOOD, GOOD, "--model", case.spec), case.refused)


def test_cli_loads_pickle_weights_only_with_allow_pickle_and_warns(model_cases):  # noqa: F811
    out = run_cli("compare", GOOD, GOOD, "--model", model_cases["pickle_weights_only"].spec, "--allow-pickle")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["a"]["text"] == GOOD
    assert "--allow-pickle is on" in out.stderr


@pytest.mark.parametrize(("k", "phrase"), [("0", "at least 1"), ("100000", "vocabulary has only")])
def test_cli_refuses_top_k_out_of_range(tiny, k, phrase):
    assert_refused(run_cli("compare", GOOD, GOOD, "--model", tiny, "--top-k", k), phrase)


def test_cli_refuses_answer_token_of_several_tokens(tiny):
    out = run_cli("patch", GOOD, "The capital of Italy is", "--model", tiny, "--answer", " Parisianism")
    assert_refused(out, "not one")


def test_cli_prints_html_prompt_literally_in_its_json(tiny):
    out = run_cli("compare", HTML, GOOD, "--model", tiny, "--top-k", "2")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["a"]["text"] == HTML


@pytest.mark.parametrize("case", [c for c in PROMPT_CASES if c.refused is None], ids=lambda c: c.name)
def test_cli_unusual_prompt_gives_json(tiny, case, capsys):
    """In-process (the same `main` the subprocess runs), so the many cases stay quick."""
    assert main(["compare", case.text, GOOD, "--model", tiny, "--top-k", "2"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["a"]["text"] == case.text


@pytest.mark.parametrize(("device", "phrase"), [("cuda:99", "no device"), ("xpu", "Unknown device")])
def test_cli_refuses_a_device_this_machine_lacks(tiny, device, phrase):
    assert_refused(run_cli("compare", GOOD, GOOD, "--model", tiny, "--device", device), phrase)
