"""The architecture's rules as a checker over source text (tests/unit/test_layers.py runs it).

Each module of `lib/` sits in a layer named by its folder; every import is resolved to the module
it names (relative ones through `ImportFrom.level`), so `from ..app import ui` inside
`lib/analyses/x.py` is `lib.app.ui`, whatever way it is written. The rules:

- core imports neither analyses nor app; analyses import only core and `lib.analyses.common`
  (what several analyses share), never another analysis or the app; common imports only core;
- pages (and the entry page) import only `lib.app`: never an analysis, `analyses.common` or core
  (the page's app module calls the analyses, errors go to the error boundary, tokens and models
  through lib.app), nor take an analysis's or core's function or type through an app module
  (`from lib.app.m import name` or `m.name`, where m imported `name` from below; a constant, an
  UPPER_CASE name such as the choices a widget offers, may come through);
- no module imports another module's `_private` name;
- the module graph of lib has no circle;
- charts are built in `lib/app/charts.py` only: no other module or page calls Altair (`alt.Chart`,
  `alt.layer`, `alt.Tooltip`, ...); they may name its types in annotations.

`violations(files)` takes {module name: source} so a test can plant a violation in memory.
What is read from one source text alone (its tree, its import statements, its Altair calls) is
kept per text (`functools.cache`), so a planted tree re-reads only the planted modules; what
depends on the whole tree (where an import leads, which layer may take it) is worked out anew
on every call.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "lib"
LAYER_RANK = {"core": 0, "common": 1, "analyses": 2, "app": 3}
PAGES_MAY_IMPORT = ("app",)


def module_name(path: Path) -> str:
    """lib/analyses/lens.py → 'lib.analyses.lens'; lib/core/__init__.py → 'lib.core'; pages too."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, str]:
    """Every module of lib/, every page and the entry page, by module name."""
    files = [*LIB.rglob("*.py"), *(ROOT / "pages").glob("*.py"), ROOT / "dashboard.py"]
    return {module_name(p): p.read_text() for p in sorted(files)}


def layer(module: str) -> str | None:
    """The layer of a lib module ('core', 'common', 'analyses', 'app'), 'pages' for a page."""
    parts = module.split(".")
    if parts[0] in ("pages", "dashboard"):
        return "pages"
    if parts[0] != "lib" or len(parts) < 2:
        return None
    if parts[1] == "analyses" and len(parts) > 2 and parts[2] == "common":
        return "common"
    return parts[1] if parts[1] in LAYER_RANK else None


@functools.cache
def _tree(source: str) -> ast.Module:
    """`source` parsed, once per text (the checkers only read the tree)."""
    return ast.parse(source)


@functools.cache
def _source_imports(source: str) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """The import statements of `source` (inside functions too), in `ast.walk` order."""
    return tuple(node for node in ast.walk(_tree(source)) if isinstance(node, (ast.Import, ast.ImportFrom)))


@functools.cache
def _top_level_imports(source: str) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """The import statements of `source` that stand outside every function, in `ast.walk` order."""
    tree = _tree(source)
    local = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
             for n in ast.walk(f)}
    return tuple(n for n in _source_imports(source) if id(n) not in local)


@functools.cache
def _attribute_reads(source: str) -> tuple[tuple[str, str], ...]:
    """(name, attribute) for every `name.attribute` in `source`, in `ast.walk` order."""
    return tuple((node.value.id, node.attr) for node in ast.walk(_tree(source))
                 if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name))


def imports(module: str, source: str, known: set[str]) -> list[tuple[str, str | None]]:
    """(module imported, name taken from it or None) for every import in `source`, resolved.

    `from . import x` names the module `package.x` where that is a module, else the name x of the
    package; `from .m import y` names module `package.m` and its name y."""
    return [(target, name) for target, name, _ in bindings(module, _source_imports(source), known)]


def bindings(module: str, nodes, known: set[str]) -> list[tuple[str, str | None, str]]:
    """`imports` with the name each import binds in `module` (its `as` name, else its own; for
    `import a.b`, 'a'), for the import statements `nodes` of `module`."""
    is_package = module in known and any(k.startswith(module + ".") for k in known)
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[str, str | None, str]] = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name, None, alias.asname or alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
                if target.split(".")[0] == "twinlens":  # the installed name of lib
                    target = "lib" + target.removeprefix("twinlens")
            for alias in node.names:
                bound = alias.asname or alias.name
                if f"{target}.{alias.name}" in known:
                    found.append((f"{target}.{alias.name}", None, bound))
                else:
                    found.append((target, alias.name, bound))
    return found


def _allowed(src_layer: str, target: str, target_layer: str | None) -> bool:
    if target_layer is None:
        return True
    if src_layer == "pages":
        return target_layer in PAGES_MAY_IMPORT
    if src_layer == "core":
        return target_layer == "core"
    if src_layer == "common":
        return target_layer in ("core", "common")
    if src_layer == "analyses":
        return target_layer in ("core", "common")
    return LAYER_RANK[target_layer] <= LAYER_RANK[src_layer]


def violations(files: dict[str, str]) -> list[str]:
    """Every broken rule in `files` ({module name: source}), one sentence each."""
    known = set(files)
    found: list[str] = []
    graph: dict[str, set[str]] = {}
    below = {m: taken_from_below(m, files[m], known) for m in known if layer(m) == "app"}
    for module, source in files.items():
        src_layer = layer(module)
        for target, name in imports(module, source, known):
            if not target.startswith(("lib", "twinlens")):
                continue
            target = "lib" + target.removeprefix("twinlens") if target.startswith("twinlens") else target
            target_layer = layer(target)
            if src_layer is not None and target != module and not _allowed(src_layer, target, target_layer):
                found.append(f"{module} ({src_layer}) imports {target} ({target_layer})")
            if name is not None and name.startswith("_") and not name.startswith("__") and target != module:
                found.append(f"{module} imports the private name {name} of {target}")
            if target in known and target != module and module.startswith("lib"):
                graph.setdefault(module, set()).add(target)
        found.extend(f"{module} builds a chart ({call}) outside {CHARTS}"
                     for call in chart_builders(module, source))
        if src_layer == "pages":
            found.extend(f"{module} takes {name} of {origin} through {through}"
                         for name, origin, through in reached_through(module, source, below, known))
    found.extend(f"import circle: {' → '.join(c)}" for c in circles(graph))
    return found


def taken_from_below(module: str, source: str, known: set[str]) -> dict[str, str]:
    """The functions and types app module `module` binds by importing them from an analysis or
    core (at its top level, not inside a function; constants left out): {name bound: the module
    it comes from}."""
    return {bound: target for target, _, bound in bindings(module, _top_level_imports(source), known)
            if layer(target) in ("core", "common", "analyses") and not bound.isupper()}


def reached_through(module: str, source: str, below: dict[str, dict[str, str]],
                    known: set[str]) -> list[tuple[str, str, str]]:
    """(name, its analysis or core module, the app module it came through) for each name a page
    takes from below through an app module (`below`: each app module's `taken_from_below`):
    `from lib.app.m import name`, or `m.name` after `from lib.app import m` — the page would
    import the analysis under another name."""
    modules: dict[str, str] = {}  # a name bound in the page → the app module it is
    found = []
    for target, name, bound in bindings(module, _source_imports(source), known):
        if target.startswith("twinlens"):
            target = "lib" + target.removeprefix("twinlens")
        if name is None and target in below:
            modules[bound] = target
        elif name is not None and name in below.get(target, {}):
            found.append((name, below[target][name], target))
    for name, attr in _attribute_reads(source):
        if name in modules and attr in below[modules[name]]:
            through = modules[name]
            found.append((attr, below[through][attr], through))
    return sorted(set(found))


CHARTS = "lib.app.charts"


def chart_builders(module: str, source: str) -> list[str]:
    """The Altair calls in `source` ('alt.Chart', ...) when `module` is not the charts module:
    a call on the name Altair is imported as, wherever it stands."""
    return [] if module == CHARTS else list(_altair_calls(source))


@functools.cache
def _altair_calls(source: str) -> tuple[str, ...]:
    """`chart_builders` of one source text, once per text."""
    tree = _tree(source)
    names = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names if alias.name == "altair"}
    return tuple(sorted({f"{node.func.value.id}.{node.func.attr}" for node in ast.walk(tree)
                         if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                         and isinstance(node.func.value, ast.Name) and node.func.value.id in names}))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each circle of the module graph once (as found by a depth-first walk), e.g. [a, b, a].

    A package's `__init__` importing its own modules lazily is not an edge here: only imports
    written in the source count, wherever they stand (inside a function too)."""
    seen: set[str] = set()
    on_path: list[str] = []
    found: list[list[str]] = []

    def walk(node: str) -> None:
        if node in on_path:
            found.append([*on_path[on_path.index(node):], node])
            return
        if node in seen:
            return
        seen.add(node)
        on_path.append(node)
        for nxt in sorted(graph.get(node, ())):
            walk(nxt)
        on_path.pop()

    for start in sorted(graph):
        walk(start)
    return found


DOOR_LINES = 250  # lib/app/ui.py, the pages' door, stays short


def door_problems(source: str) -> list[str]:
    """What makes `ui.py` more than a door: over `DOOR_LINES` lines, or names re-exported for the
    pages (an `__all__`, or `import x as x`)."""
    found = []
    lines = source.count("\n")
    if lines > DOOR_LINES:
        found.append(f"ui.py has {lines} lines (at most {DOOR_LINES})")
    tree = ast.parse(source)
    if any(isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets)
           for node in tree.body):
        found.append("ui.py re-exports names through __all__")
    found.extend(f"ui.py re-exports {alias.name}" for node in ast.walk(tree)
                 if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
                 if alias.asname is not None and alias.asname == alias.name.split(".")[-1])
    return found
