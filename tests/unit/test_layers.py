"""The folder list is the architecture: core ← analyses.common ← analyses ← app ← pages, and only
the app layer knows Streamlit. The rules live in tests/architecture.py; each is shown failing on a
planted violation before it is trusted on the real tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from architecture import LIB, door_problems, layer, module_name, sources, violations

MODULES = sorted(p for p in LIB.rglob("*.py") if p.parent != LIB)


def test_every_module_sits_in_a_layer():
    assert all(layer(module_name(p)) is not None for p in MODULES)


def test_the_tree_keeps_every_rule():
    assert violations(sources()) == []


@pytest.mark.parametrize(
    ("planted", "broken"),
    [
        ({"lib.analyses.x": "from ..app import ui\n"}, "lib.analyses.x (analyses) imports lib.app.ui (app)"),
        ({"lib.core.x": "from ..analyses.watch import watch_tokens\n"}, "(core) imports lib.analyses.watch"),
        ({"lib.analyses.y": "from .watch import watch_tokens\n"}, "(analyses) imports lib.analyses.watch"),
        ({"lib.analyses.common.z": "from ..watch import f\n"}, "(common) imports lib.analyses.watch"),
        ({"pages.p": "from lib.core.errors import PromptError\n"}, "(pages) imports lib.core.errors (core)"),
        ({"pages.p": "from twinlens.core import models\n"}, "(pages) imports lib.core.models (core)"),
        ({"pages.p": "from lib.core.y import g\n"}, "pages.p (pages) imports lib.core.y (core)"),
        ({"pages.p": "from lib.analyses.x import f\n"}, "pages.p (pages) imports lib.analyses.x (analyses)"),
        ({"pages.p": "import lib.analyses.x\n"}, "pages.p (pages) imports lib.analyses.x (analyses)"),
        ({"pages.p": "from lib import analyses\n"}, "pages.p (pages) imports lib.analyses (analyses)"),
        ({"pages.p": "from lib.analyses.common import lens\n"},
         "pages.p (pages) imports lib.analyses.common.lens (common)"),
        ({"pages.p": "from twinlens.analyses.diff import top_token_diff\n"},
         "pages.p (pages) imports lib.analyses.diff (analyses)"),
        ({"dashboard": "from lib.analyses.watch import watch_tokens\n"},
         "dashboard (pages) imports lib.analyses.watch (analyses)"),
        ({"lib.app.door": "from ..analyses.diff import top_token_diff\n",
          "pages.p": "from lib.app import door, ui\nui.cached(door.top_token_diff)\n"},
         "pages.p takes top_token_diff of lib.analyses.diff through lib.app.door"),
        ({"lib.app.door": "from ..core.tokens import TypedWord as Word\n",
          "pages.p": "from lib.app.door import Word\n"},
         "pages.p takes Word of lib.core.tokens through lib.app.door"),
        ({"lib.app.door": "from ..analyses.diff import top_token_diff\n",
          "pages.p": "import lib.app.door as d\nd.top_token_diff\n"},
         "pages.p takes top_token_diff of lib.analyses.diff through lib.app.door"),
        ({"lib.app.q": "from ..core.hooks import _first\n"}, "imports the private name _first of lib.core"),
        ({"pages.p": "import altair as alt\nchart = alt.Chart(frame).mark_bar()\n"},
         "pages.p builds a chart (alt.Chart) outside lib.app.charts"),
        ({"lib.app.v": "import altair as A\ndef f(x) -> A.Chart:\n    return A.layer(x)\n"},
         "lib.app.v builds a chart (A.layer) outside lib.app.charts"),
    ],
)
def test_a_planted_violation_is_caught(planted, broken):
    tree = {**sources(), **planted}
    found = violations(tree)
    assert any(broken in v for v in found), found


def test_a_planted_import_circle_is_caught():
    tree = {
        **sources(),
        "lib.core.ring_a": "from .ring_b import x\n",
        "lib.core.ring_b": "def f():\n    from .ring_a import y\n",  # a lazy import still closes it
    }
    assert "import circle: lib.core.ring_a → lib.core.ring_b → lib.core.ring_a" in violations(tree)


def test_allowed_imports_are_not_flagged():
    tree = {
        **sources(),
        "lib.analyses.ok": "from ..core.models import load_model\nfrom .common.lens import lens_column\n",
        "pages.ok": "from lib.app import ui\nimport streamlit as st\n",
        # the page's app module calls the analysis; a constant may come through, and an import
        # inside the app module's function binds nothing the page could take
        "lib.app.door": ("from ..analyses.common.decode import MAX_NEW_TOKENS\n"
                         "def f():\n    from ..analyses.diff import top_token_diff\n"),
        "pages.thin": "from lib.app import door\nfrom lib.app.door import MAX_NEW_TOKENS\ndoor.f()\n",
    }
    assert violations(tree) == []


def test_pages_import_only_the_app_layer():
    """No page of the real tree imports an analysis, analyses.common or core, in any form."""
    tree = sources()
    pages = {m: s for m, s in tree.items() if layer(m) == "pages"}
    assert len(pages) > 10 and "dashboard" in pages
    assert [v for v in violations(tree) if v.startswith(tuple(pages))] == []


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_only_the_app_layer_imports_streamlit(path):
    if layer(module_name(path)) != "app":
        assert "import streamlit" not in path.read_text() and "from streamlit" not in path.read_text(), path


@pytest.mark.parametrize("path", MODULES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_only_the_local_backend_registers_torch_hooks(path):
    if path.name not in ("hooks.py", "architecture.py"):
        assert "register_forward" not in path.read_text(), f"{path.relative_to(LIB)} registers a hook"


def test_the_package_map_names_every_layer_folder():
    """pyproject's package list covers every folder of lib/ (an editable install finds them)."""
    text = (LIB.parent / "pyproject.toml").read_text()
    folders = {p.parent for p in LIB.rglob("__init__.py")}
    for folder in folders:
        name = ".".join(["twinlens", *folder.relative_to(LIB).parts]).rstrip(".")
        assert f'"{name}"' in text, name


def test_lib_docstring_maps_the_layers():
    doc = (LIB / "__init__.py").read_text()
    for folder in ("core", "analyses", "common", "app"):
        assert folder in doc
    for path in MODULES:
        if path.name != "__init__.py":
            assert path.stem in doc, f"lib/__init__.py does not name {path.relative_to(LIB)}"


def test_module_names_resolve_like_python(tmp_path: Path):
    assert module_name(LIB / "core" / "__init__.py") == "lib.core"
    assert module_name(LIB / "analyses" / "common" / "lens.py") == "lib.analyses.common.lens"


def test_the_pages_door_stays_a_door():
    assert door_problems((LIB / "app" / "ui.py").read_text()) == []


def test_a_long_door_or_a_re_export_is_caught():
    assert door_problems("x = 1\n" * 251) == ["ui.py has 251 lines (at most 250)"]
    assert door_problems("from .views import plain as plain\n__all__ = ['plain']\n") == [
        "ui.py re-exports names through __all__", "ui.py re-exports plain"]
