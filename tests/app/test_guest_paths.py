"""Every text input of every page that names a path or a remote spec goes through the access policy
(issue 28), walked as a guest of a shared twinlens.

The inputs that take a path are declared once, in `lib.app.access.PATH_INPUTS`; every other text
input of the app is declared here, in `NOT_PATHS`, with what it holds. Two checks keep the lists
honest: the app's source (pages/, dashboard.py, lib/app/) is scanned for every text input, and
every page is opened as a guest and every text input on it looked up; an undeclared one fails.
Then each declared path input gets, from a guest, an existing folder (a good model that is also a
good SAE), an existing file and nothing, all outside the listed folders: it must answer with the
one refusal of `access.refused`, the same words for the three. Both checkers are tried on a planted
page that reads a typed path itself, and must catch it.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
import torch
from app_helpers import ROOT, AppTest, submit
from bad_input_cases import GOOD, GUEST_PATH_CASES, GUEST_REFUSED, build_guest_disk
from streamlit import config

from lib.analyses.common import sae as sae_module
from lib.analyses.common.sae import save_saelens
from lib.app import access, ui
from lib.app.cache import Results
from lib.app.views import plain

SECRET = "operator-secret-of-this-start"
B = "The capital of Italy is"
SOURCES = ("dashboard.py", "pages", "lib/app")
GATE = "lib/app/paths.py"  # draws the declared path inputs (path_input) and checks them
NOT_PATHS = {  # every other text input of the app: what it holds (a prompt, a word, a name...)
    "prompt_a": "a prompt",
    "prompt_b": "a prompt",
    "system": "the chat's system message",
    "prefill": "the start of the chat's answer",
    "ndif_api_key": "an NDIF API key, sent to NDIF with remote jobs",
    "NDIF API key": "the same input, named by its label in the source (its key is a constant)",
    "Name": "the name a comparison is saved under",
    "rename-*": "a saved comparison's new name",
    "watch-tokens-*": "words to watch",
    "Words to watch, one per line": "the same input, named by its label in the source",
    "bos-token-1-*": "a word of the vocabulary",
    "bos-token-2-*": "a word of the vocabulary",
    "patching-answer": "a word of the vocabulary",
    "patching-wrong": "a word of the vocabulary",
    "pages/patching.py::token_inputs": "the two words above (their key and label are variables)",
    "components-answer": "a word of the vocabulary",
    "components-wrong": "a word of the vocabulary",
    "steering-answer": "a word of the vocabulary",
    "steering-wrong": "a word of the vocabulary",
    "steering-alphas": "coefficients",
    "steering-b": "a prompt",
    "steering-third": "a prompt",
    "circuit-answer": "a word of the vocabulary",
    "circuit-wrong": "a word of the vocabulary",
    "sets_a": "prompts, one a line (set A)",
    "sets_b": "prompts, one a line (set B)",
}
REVEAL = {"model2": "models"}  # inputs shown only in the sidebar's other mode


# --- the checkers ---------------------------------------------------------------------------


def _literal(node: ast.AST | None) -> str | None:
    """A key or label as declared: a string, or an f-string's constant start followed by '*'."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr) and node.values and isinstance(node.values[0], ast.Constant):
        return f"{node.values[0].value}*"
    return None


def source_inputs(root: Path, sources=SOURCES, gate: str = GATE) -> list[tuple[str, str, str]]:
    """Every text input drawn in the app's source: (where, what draws it, name), the name being
    the key, else the label, else 'file::function' (both variables)."""
    found = []
    files = [root / s for s in sources if (root / s).is_file()]
    files += [f for s in sources if (root / s).is_dir() for f in sorted((root / s).rglob("*.py"))]
    for file in files:
        rel = file.relative_to(root).as_posix()
        if rel == gate:
            continue
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for function in [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))]:
            body = function.body if isinstance(function, ast.FunctionDef) else [
                n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef))]
            for call in (c for stmt in body for c in ast.walk(stmt) if isinstance(c, ast.Call)):
                name = getattr(call.func, "attr", getattr(call.func, "id", ""))
                if name not in ("text_input", "text_area", "path_input"):
                    continue
                keywords = {k.arg: k.value for k in call.keywords}
                label = call.args[0] if call.args else keywords.get("label")
                where = f"{rel}:{call.lineno}"
                fallback = f"{rel}::{getattr(function, 'name', '<module>')}"
                found.append((where, name, _literal(keywords.get("key")) or _literal(label) or fallback))
    return list(dict.fromkeys(found))


def undeclared_in_source(root: Path, **kwargs) -> list[str]:
    """Text inputs that are neither a declared path input drawn through the gate (path_input) or
    checked where models load (the sidebar's model fields), nor declared as not a path."""
    paths = {entry.key for entry in access.PATH_INPUTS}
    wrong = []
    for where, drawn_by, name in source_inputs(root, **kwargs):
        if drawn_by == "path_input":
            ok = name in paths
        else:
            ok = name in NOT_PATHS or (name in paths and access.PATH_INPUTS[_index(name)].kind == "model")
        if not ok:
            wrong.append(f"{where}: {drawn_by} {name!r}")
    return wrong


def _index(key: str) -> int:
    return next(i for i, entry in enumerate(access.PATH_INPUTS) if entry.key == key)


def _declared_text(name: str) -> bool:
    return name in NOT_PATHS or any(
        pattern.endswith("*") and name.startswith(pattern[:-1]) for pattern in NOT_PATHS
    )


def undeclared_on_page(at: AppTest) -> list[str]:
    """The text inputs on the page `at` shows that are declared nowhere."""
    paths = {entry.key for entry in access.PATH_INPUTS}
    shown = [(w.key, w.label) for w in (*at.text_input, *at.text_area)]
    return [f"{key or label!r}" for key, label in shown
            if key not in paths and not _declared_text(key or "") and not _declared_text(label)]


def answers(at: AppTest, key: str, typed: dict[str, str], compare: bool = False) -> dict[str, str]:
    """What the page says (its alerts and any exception) for each value typed into input `key`,
    with the typed text replaced by <typed>. `compare`: the input is in the sidebar's form."""
    said = {}
    for name, value in typed.items():
        field = next(w for w in (*at.text_input, *at.text_area) if w.key == key)
        field.input(value)
        if compare:
            next(b for b in at.sidebar.button if b.label == "Compare").click()
        at.run()
        texts = [e.value for e in (*at.error, *at.warning, *at.exception)]
        said[name] = "\n".join(t.replace("\\", "").replace(f"'{value}'", "'<typed>'") for t in texts)
    return said


def check_one_refusal(said: dict[str, str], kind: str, folders, hub: bool = False) -> None:
    """AssertionError unless every answer is the one refusal of `kind`, the same for all."""
    expected = plain(access.refused("<typed>", kind, folders, hub)).replace("\\", "")
    for name, text in said.items():
        assert text == expected, f"{name}: {text!r}, not the one refusal {expected!r}"


# --- the disk, the server, the pages --------------------------------------------------------


@pytest.fixture
def guest_disk(tmp_path, tiny_folders, tiny_models) -> dict[str, Path]:
    """build_guest_disk's folders, and in them: `outside/secret`, a good tiny GPT-2 that is also a
    good SAE for it (so an operator would load either); `listed/sae`, a good SAE for it."""
    disk = build_guest_disk(tmp_path / "disk")
    shutil.copytree(tiny_folders["gpt2"], disk["outside"] / "secret")
    gpt2 = tiny_models["gpt2"]
    for folder in (disk["outside"] / "secret", disk["listed"] / "sae"):
        g = torch.Generator().manual_seed(0)
        save_saelens(folder, W_enc=torch.randn(gpt2.d_model, 16, generator=g), b_enc=torch.zeros(16),
                     W_dec=torch.randn(16, gpt2.d_model, generator=g), b_dec=torch.zeros(gpt2.d_model),
                     architecture="standard", hook_name="blocks.1.hook_resid_pre", model_name=gpt2.name,
                     dtype="float32")
    return disk


@pytest.fixture
def shared(monkeypatch, tmp_path, tiny_folders, guest_disk):
    """A server on 0.0.0.0 (secret SECRET) whose operator listed the tiny models' folder and
    `listed`; no hub for guests. Models in memory and saved comparisons start empty."""
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    monkeypatch.setenv(access.TOKEN_ENV, SECRET)
    monkeypatch.setenv(access.MODELS_ENV, f"{tiny_folders['gpt2'].parent}:{guest_disk['listed']}")
    for name in (access.EXPERT_ENV, access.SHARED_ENV, access.HUB_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(ui, "RESULTS", Results())
    monkeypatch.setattr(ui, "_LOADED_BY", {})
    yield guest_disk
    config.set_option("server.address", before)


def page_files(mode: str = "prompts") -> list[str]:
    """The pages of the navigation in the sidebar's `mode` (the registry's pages; for two models,
    those whose row says they show two models)."""
    from lib.app.registry import PAGES

    return [row.page for row in PAGES if mode == "prompts" or row.two_models]


def guest_on(app: AppTest, page: str, tiny_folders, mode: str = "prompts") -> AppTest:
    """A guest who compared two prompts on the tiny GPT-2 (inside a listed folder), on `page`."""
    app.run()
    if mode != "prompts":
        app.sidebar.radio(key="mode").set_value(mode).run()
        app.sidebar.text_input(key="model2").input(str(tiny_folders["gpt2"]))
    submit(app, model=str(tiny_folders["gpt2"]), a=GOOD, b=B if mode == "prompts" else None, k=3)
    app.switch_page("pages/compare.py" if page == "dashboard.py" else page).run()
    assert not app.exception and not app.error, [e.value for e in app.error]
    return app


def probes(disk: dict[str, Path]) -> dict[str, str]:
    """An existing folder, an existing file and nothing, all outside the listed folders, and the
    issue's three."""
    outside = disk["outside"]
    return {"folder": str(outside / "secret"), "file": str(outside / "notes.txt"),
            "nothing": str(outside / "nothing"), "system folder": "/etc", "system file": "/etc/passwd",
            "missing": "/nonexistent-xyz", "through a symlink": str(disk["listed"] / "escape" / "secret")}


# --- the app's own inputs -------------------------------------------------------------------


def test_every_text_input_in_the_source_is_declared():
    assert undeclared_in_source(ROOT) == []
    drawn = {name for _, by, name in source_inputs(ROOT) if by == "path_input"}
    not_models = {entry.key for entry in access.PATH_INPUTS if entry.kind != "model"}
    assert not_models <= drawn, "a declared path input is not drawn through path_input"


@pytest.mark.slow
def test_every_text_input_on_every_page_is_declared(app, shared, tiny_folders):
    assert "pages/features.py" in page_files()
    for mode in ("prompts", "models"):
        at = guest_on(AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=180), "dashboard.py",
                      tiny_folders, mode)
        for page in page_files(mode):
            at.switch_page(page).run()
            assert not at.exception, (page, at.exception)
            assert undeclared_on_page(at) == [], page
            for entry in access.PATH_INPUTS:
                if entry.page == page and REVEAL.get(entry.key, "prompts") == mode:
                    assert entry.key in [w.key for w in at.text_input], (page, entry.key)


@pytest.mark.parametrize("entry", access.PATH_INPUTS, ids=lambda e: e.key)
def test_a_guest_gets_one_message_for_a_folder_a_file_and_nothing(app, shared, tiny_folders, entry,
                                                                   monkeypatch):
    """Each declared path input, as a guest: one refusal for everything outside the listed
    folders, and the library's readers (models, SAEs) never asked for any of it."""
    from lib.app import cache

    at = guest_on(app, entry.page, tiny_folders, REVEAL.get(entry.key, "prompts"))
    read = []
    for module, name in ((sae_module, "load_sae"), (cache, "load_model")):
        real = getattr(module, name)

        def spy(path, _real=real, **kw):
            read.append(path)
            return _real(path, **kw)

        monkeypatch.setattr(module, name, spy)
    said = answers(at, entry.key, probes(shared), compare=entry.page == "dashboard.py")
    check_one_refusal(said, entry.kind, at_folders(tiny_folders, shared))
    assert not [path for path in read if str(path) in probes(shared).values()], read


def test_the_operator_still_reads_any_sae_and_gets_the_librarys_messages(app, shared, tiny_folders):
    """The same probes from the operator: the folder is read and the others get the detailed
    messages — so the probes can be told apart, and the guest's one message is the policy's doing."""
    app.query_params[access.TOKEN_PARAM] = SECRET
    at = guest_on(app, "pages/features.py", tiny_folders)
    typed = probes(shared)
    said = answers(at, "features-sae", {k: typed[k] for k in ("folder", "file", "nothing", "system folder")})
    assert "SAE at" not in said["folder"] and "not an SAE" not in said["folder"]  # read
    assert len(set(said.values())) == 4, said
    assert "is not an SAE: give its folder" in said["file"]
    assert "There is no SAE at" in said["nothing"]
    assert "is not an SAE folder" in said["system folder"]


def test_a_guest_reads_an_sae_inside_a_listed_folder(app, shared, tiny_folders):
    at = guest_on(app, "pages/features.py", tiny_folders)
    at.text_input(key="features-sae").input(str(shared["listed"] / "sae")).run()
    assert not at.exception and not at.error
    assert any("activation A" in df.value.columns for df in at.dataframe)


@pytest.mark.parametrize("case", [c for c in GUEST_PATH_CASES if c.kind == "sae" and "\x00" not in c.spec],
                         ids=lambda c: c.name)
def test_the_features_sae_field_follows_the_guest_path_table(app, shared, tiny_folders, case, monkeypatch):
    """The bad-input table's guest rows on the Features page: refused ones get the one message;
    allowed ones reach the SAE reader (which then says what it finds: inside a listed folder)."""
    monkeypatch.chdir(shared["outside"])  # relative rows point outside
    spec = case.spec.format(**shared)
    at = guest_on(app, "pages/features.py", tiny_folders)
    at.text_input(key="features-sae").input(spec).run()
    assert not at.exception
    errors = [e.value.replace("\\", "") for e in at.error]
    if case.refused:
        assert len(errors) == 1 and GUEST_REFUSED in errors[0], errors
        assert errors[0].replace(f"'{spec.strip()}'", "'<typed>'", 1) == plain(
            access.refused("<typed>", "sae", at_folders(tiny_folders, shared))).replace("\\", "")
    else:
        assert not any(GUEST_REFUSED in e for e in errors), errors


def at_folders(tiny_folders, disk) -> tuple[Path, ...]:
    return access.listed_folders(f"{tiny_folders['gpt2'].parent}:{disk['listed']}")


def test_hf_sae_specs_wait_for_the_operators_leave(app, shared, tiny_folders, monkeypatch):
    """No hub fetch for a guest unless the server was started with --guest-hub: the spec never
    reaches the hub client. With it, the spec goes on to the SAE reader (offline here)."""
    import huggingface_hub

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda *a, **k: asked.append(a) or 1 / 0)
    spec = "hf:google/gemma-scope-2b-pt-res/layer_20"
    at = guest_on(app, "pages/features.py", tiny_folders)
    at.text_input(key="features-sae").input(spec).run()
    assert GUEST_REFUSED in at.error[0].value and asked == []
    monkeypatch.setenv(access.HUB_ENV, "1")
    at.run()
    assert asked and "Could not fetch the SAE" in at.error[0].value


def test_hub_model_ids_wait_for_the_operators_leave(app, shared, tiny_folders, monkeypatch):
    """A guest's hub id is refused before any load (which would ask the hub) unless the server was
    started with --guest-hub; then the load is tried (offline here: the same words)."""
    from lib.app import cache

    at = guest_on(app, "pages/compare.py", tiny_folders)
    asked = []
    real_load = cache.load_model
    monkeypatch.setattr(cache, "load_model", lambda spec, **kw: asked.append(spec) or real_load(spec, **kw))
    said = answers(at, "model", {"no hub": "gpt2"}, compare=True)
    assert asked == [] and GUEST_REFUSED in said["no hub"]
    monkeypatch.setenv(access.HUB_ENV, "1")
    with_hub = answers(at, "model", {"guest hub": "gpt2"}, compare=True)
    assert asked == ["gpt2"] and GUEST_REFUSED in with_hub["guest hub"]


# --- the checkers catch a page that reads a typed path itself -------------------------------

PLANTED = '''
import streamlit as st
from lib.app import ui

path = st.text_input("Lens file", key="planted-lens")
if path:
    from pathlib import Path
    if not Path(path).exists():
        st.error(f"There is no lens at '{path}'.")
    elif Path(path).is_file():
        st.error(f"'{path}' is a file.")
ok = paths.path_input("Lens file", key="planted-through-the-gate")
'''


def test_the_source_checker_catches_an_undeclared_text_input(tmp_path):
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "planted.py").write_text(PLANTED)
    found = undeclared_in_source(tmp_path, sources=("pages",))
    assert len(found) == 2 and "'planted-lens'" in found[0] and "path_input" in found[1], found


def _planted_page() -> None:
    """A page with a path field that reads the path itself (the bug), beside one through the gate."""
    from pathlib import Path

    import streamlit as st

    from lib.app import paths as gate  # AppTest runs this function's own source, without the module's imports

    path = st.text_input("Lens file", key="planted-lens")
    if path:
        if not Path(path).exists():
            st.error(f"There is no lens at '{path}'.")
        elif Path(path).is_file():
            st.error(f"'{path}' is a file.")
    gate.path_input("Lens file", key="planted-through-the-gate")


def test_the_walk_catches_a_path_field_that_bypasses_the_policy(shared, monkeypatch):
    planted = (access.PathInput("planted.py", "planted-lens", "lens"),
               access.PathInput("planted.py", "planted-through-the-gate", "lens"))
    monkeypatch.setattr(access, "PATH_INPUTS", access.PATH_INPUTS + planted)
    at = AppTest.from_function(_planted_page, default_timeout=60).run()
    assert undeclared_on_page(at) == []  # declared, so only the walk can tell
    typed = probes(shared)
    folders = access.Policy.make("0.0.0.0").folders
    with pytest.raises(AssertionError, match="not the one refusal"):
        check_one_refusal(answers(at, "planted-lens", typed), "lens", folders)
    at = AppTest.from_function(_planted_page, default_timeout=60).run()
    check_one_refusal(answers(at, "planted-through-the-gate", typed), "lens", folders)
    monkeypatch.setattr(access, "PATH_INPUTS", access.PATH_INPUTS[:-2])
    at = AppTest.from_function(_planted_page, default_timeout=60).run()
    assert sorted(undeclared_on_page(at)) == ["'planted-lens'"]  # undeclared: the inventory fails
