"""The folder list is the architecture: core ← analyses ← app, and only the app layer knows Streamlit."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[2] / "lib"
RANK = {"core": 0, "analyses": 1, "app": 2}
MODULES = sorted(p for p in LIB.rglob("*.py") if p.parent != LIB)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_every_module_sits_in_a_layer():
    assert {p.parent.name for p in MODULES} <= set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_module_imports_from_a_higher_layer(path):
    own = RANK[path.parent.name]
    for name in imported(path):
        parts = name.split(".")
        if parts[0] == "lib" and len(parts) > 1 and parts[1] in RANK:
            assert RANK[parts[1]] <= own, f"{path.relative_to(LIB)} imports {name} from a higher layer"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_only_the_app_layer_imports_streamlit(path):
    if path.parent.name != "app":
        assert not any(n.split(".")[0] == "streamlit" for n in imported(path)), path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_only_the_local_backend_registers_torch_hooks(path):
    if path.name not in ("hooks.py", "architecture.py"):
        assert "register_forward" not in path.read_text(), f"{path.relative_to(LIB)} registers a hook"
