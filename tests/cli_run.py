"""Running the command line in tests: in-process (the same `main` the command runs) by default,
as a real process where the process boundary is what is tested."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class CliResult:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CliResult:
    """`twinlens ARGS` through `lib.app.cli.main` in this process (argparse's exit becomes the code)."""
    from lib.app.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return CliResult(code, out.getvalue(), err.getvalue())


PYTHON_M_LIB = (sys.executable, "-m", "lib")


def run_cli_process(*args: str | bytes, command: tuple[str, ...] = PYTHON_M_LIB) -> CliResult:
    """The same in a fresh process (`python -m lib` from the checkout unless `command` says otherwise)."""
    done = subprocess.run(
        [*command, *args], cwd=ROOT, capture_output=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    return CliResult(done.returncode, done.stdout.decode(), done.stderr.decode(errors="replace"))
