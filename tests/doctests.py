"""The `>>>` examples in lib's docstrings, run as doctests (tests/unit/test_doctests.py runs those
that need no model, tests/integration/test_doctests_real_model.py those that load the embedded one)."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "lib"


def modules_with_examples() -> list[str]:
    """Every lib module whose source holds a `>>>` example, as an importable name."""
    found = []
    for path in sorted(LIB.rglob("*.py")):
        if ">>>" in path.read_text():
            parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
            found.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def loads_a_model(module: str) -> bool:
    return "load_model()" in (importlib.import_module(module).__doc__ or "")


def run(module: str) -> doctest.TestResults:
    """Run the module's examples; a failure's report goes to stdout (pytest shows it)."""
    return doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS, verbose=False)
