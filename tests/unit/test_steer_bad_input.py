"""The steering / continuation / chat rows of the bad-input table (tests/bad_input_cases.py) through
the library (the CLI's functions) and the command's `main`: one plain message each."""

from __future__ import annotations

import pytest
from bad_input_cases import STEER_CASES, steer_case_argv, steer_files  # noqa: F401  (fixture)

from lib.app.cli import build_parser, run
from lib.core.errors import TwinlensError


@pytest.mark.parametrize("case", STEER_CASES, ids=lambda c: c.name)
def test_library_refuses(case, steer_files):  # noqa: F811
    args = build_parser().parse_args(steer_case_argv(case, steer_files))
    with pytest.raises(TwinlensError) as caught:
        run(args)
    message = str(caught.value)
    assert case.refused in message and "\n" not in message


@pytest.mark.parametrize("case", [c for c in STEER_CASES if c.name in (
    "coefficient_to_nan", "empty_third_prompt", "vector_file_for_another_model", "corrupt_vector_file",
    "chat_template_that_fails")], ids=lambda c: c.name)
def test_cli_refuses_in_one_line(case, steer_files, run_cli):  # noqa: F811
    """The command's `main` in-process (tests/unit/test_cli_errors.py runs `python -m lib` itself)."""
    out = run_cli(*steer_case_argv(case, steer_files))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and out.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and case.refused in lines[0], out.stderr
