"""A failure that is not the user's (a bug, memory) still gives one plain line, never a traceback."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lib.app import cli
from lib.core.errors import unexpected


def test_cli_reports_an_unexpected_failure_in_one_line(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.delenv("TWINLENS_DEBUG", raising=False)
    analysis, command = cli.COMMANDS["compare"]
    monkeypatch.setitem(cli.COMMANDS, "compare", (analysis, replace(command, run=broken)))
    assert cli.main(["compare", "a", "b"]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    lines = out.err.strip().splitlines()
    assert len(lines) == 1
    assert "ran out of memory" in lines[0] and "Traceback" not in out.err


def test_cli_raises_with_debug_on(monkeypatch):
    def broken(args):
        raise ValueError("boom")

    monkeypatch.setenv("TWINLENS_DEBUG", "1")
    analysis, command = cli.COMMANDS["compare"]
    monkeypatch.setitem(cli.COMMANDS, "compare", (analysis, replace(command, run=broken)))
    with pytest.raises(ValueError):
        cli.main(["compare", "a", "b"])


def test_unexpected_names_the_error_and_its_first_line():
    text = unexpected(OSError("missing\nsecond line"))
    assert "OSError" in text and "missing" in text and "second line" not in text
