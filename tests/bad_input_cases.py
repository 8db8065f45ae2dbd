"""The table of bad (and merely unusual) input, shared by the library, CLI and app tests.

Every case is run through all three: a refused case must give one plain message (PromptError,
ModelLoadError, SettingsError…; one line on stderr and exit 1; st.error) naming the problem, and
an unusual case that is fine (emoji, RTL, control characters, HTML…) must simply work and be
shown as the text it is. The tiny test models read at most 128 tokens.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from tiny import build_tiny_model

GOOD = "The capital of France is"
HTML = "<img src=x onerror=alert(1)>"


@dataclass(frozen=True)
class PromptCase:
    name: str
    text: str
    refused: str | None  # a phrase of the message when the prompt is refused; None: it must work


PROMPT_CASES = (
    PromptCase("empty", "", "empty"),
    PromptCase("whitespace_only", " \n\t  ", "empty"),
    PromptCase("hundred_thousand_characters", ("France is Paris. " * 6250)[:100_000], "reads at most"),
    PromptCase("over_the_context", "the " * 200, "reads at most 128"),
    PromptCase("nul_character", "The capital\x00 of France is", "NUL"),
    PromptCase("emoji", "Is there a seahorse emoji? 🐴🌊 👩‍👩‍👧 🏳️‍🌈", None),
    PromptCase("right_to_left", "مرحبا بالعالم \u200fשלום\u200e", None),
    PromptCase("zero_width_joiners", "a\u200db\u200cc\u200bd \u2060e", None),
    PromptCase("combining_marks", "cafe\u0301 nai\u0308ve Z\u0337\u0321\u035ba\u0300", None),
    PromptCase("control_characters", "bell\x07 escape\x1b[31m red\x7f form\x0cfeed\r\nend", None),
    PromptCase("html", HTML, None),
    PromptCase("markdown", "# Title **bold** _it_ [a](javascript:alert(1)) ![i](http://x/y.png) `c`", None),
    PromptCase("latex", "$x$ and $$\\int_0^1 x\\,dx$$ \\(y\\)", None),
    PromptCase("different_length", "The capital of France, a country in western Europe, is", None),
)


MODEL_CASE_NAMES = (  # the cases build_model_cases makes, known before any folder is built
    "invalid_model_id", "hub_id_while_offline", "unknown_org_id_while_offline", "missing_folder",
    "folder_that_is_not_a_model", "corrupt_safetensors", "truncated_safetensors", "no_weights",
    "missing_tensors", "pickle_weights_only", "remote_code", "unsupported_architecture",
)


@dataclass(frozen=True)
class ModelCase:
    name: str
    spec: str
    refused: str  # a phrase of the message


def build_model_cases(root: Path, good: Path) -> dict[str, ModelCase]:
    """Folders that are not usable models, made from the good tiny model `good`, plus ids."""

    def copy(name: str) -> Path:
        folder = root / name
        shutil.copytree(good, folder)
        return folder

    not_a_model = root / "not_a_model"
    not_a_model.mkdir()
    (not_a_model / "notes.txt").write_text("holiday photos")

    garbage = copy("corrupt_safetensors")
    (garbage / "model.safetensors").write_bytes(bytes(range(256)) * 64)

    truncated = copy("truncated_safetensors")
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])

    no_weights = copy("no_weights")
    (no_weights / "model.safetensors").unlink()

    missing = copy("missing_tensors")
    from safetensors.torch import load_file, save_file

    state = load_file(missing / "model.safetensors")
    save_file({k: v for k, v in state.items() if ".h.1." not in k}, str(missing / "model.safetensors"),
              metadata={"format": "pt"})

    pickle_only = copy("pickle_only")
    write_pickle_weights(pickle_only)

    remote = copy("remote_code")
    config = json.loads((remote / "config.json").read_text())
    config.update(model_type="twinlens_custom", auto_map={"AutoConfig": "custom.Config",
                                                          "AutoModelForCausalLM": "custom.Model"})
    (remote / "config.json").write_text(json.dumps(config))

    unsupported = build_tiny_model("lfm2", root / "unsupported_architecture")

    cases = [
        ModelCase("invalid_model_id", "no such model!", "nor a valid model id"),
        ModelCase("hub_id_while_offline", "gpt2", "cannot be reached"),
        ModelCase("unknown_org_id_while_offline", "no-such-org/no-such-model", "cannot be reached"),
        ModelCase("missing_folder", str(root / "nowhere" / "model"), "No folder"),
        ModelCase("folder_that_is_not_a_model", str(not_a_model), "holds no model"),
        ModelCase("corrupt_safetensors", str(garbage), "damaged"),
        ModelCase("truncated_safetensors", str(truncated), "damaged"),
        ModelCase("no_weights", str(no_weights), "holds no weights"),
        ModelCase("missing_tensors", str(missing), "do not match its config"),
        ModelCase("pickle_weights_only", str(pickle_only), "pickle"),
        ModelCase("remote_code", str(remote), "trust remote code"),
        ModelCase("unsupported_architecture", str(unsupported), "cannot read models of type 'lfm2'"),
    ]
    assert tuple(c.name for c in cases) == MODEL_CASE_NAMES
    return {case.name: case for case in cases}


def write_pickle_weights(folder: Path) -> None:
    """Replace the folder's safetensors weights by the same tensors in pytorch_model.bin."""
    import torch
    from safetensors.torch import load_file

    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()


@pytest.fixture(scope="session")
def model_cases(tmp_path_factory, tiny_folders) -> dict[str, ModelCase]:
    return build_model_cases(tmp_path_factory.mktemp("bad-models"), tiny_folders["gpt2"])


# A guest of a shared twinlens (issue 17) naming a model: refused with one message that says
# nothing of the disk ("not available on this shared twinlens" whether the path exists, is a file,
# a model or nothing), or allowed. `{listed}` is a folder the operator listed (holding a model
# folder `model` and a symlink `escape` to `{outside}`); `{outside}` is not listed and holds a
# good model `secret-model` and a file `notes.txt`. Run by tests/unit/test_access.py and the app.
GUEST_REFUSED = "is not available on this shared twinlens"


@dataclass(frozen=True)
class GuestModelCase:
    name: str
    spec: str
    refused: bool  # for a guest of a server started without --guest-hub
    hub_allows: bool = False  # allowed instead when the operator let guests fetch from the hub (issue 28)


GUEST_MODEL_CASES = (
    GuestModelCase("default", "default", False),
    GuestModelCase("hub_id", "gpt2", True, hub_allows=True),
    GuestModelCase("hub_id_with_org", "HuggingFaceTB/SmolLM2-135M", True, hub_allows=True),
    GuestModelCase("listed_model", "{listed}/model", False),
    GuestModelCase("listed_folder_itself", "{listed}", False),
    GuestModelCase("listed_through_dotdot", "{listed}/../listed/model", False),
    GuestModelCase("outside_model", "{outside}/secret-model", True),
    GuestModelCase("outside_missing", "{outside}/no-such-model", True),
    GuestModelCase("outside_file", "{outside}/notes.txt", True),
    GuestModelCase("outside_folder", "{outside}", True),
    GuestModelCase("root", "/", True),
    GuestModelCase("system_file", "/etc/passwd", True),
    GuestModelCase("missing_absolute", "/no/such/dir", True),
    GuestModelCase("home", "~", True),
    GuestModelCase("home_subfolder", "~/models", True),
    GuestModelCase("dotdot_escape", "{listed}/../outside/secret-model", True),
    GuestModelCase("symlink_escape", "{listed}/escape/secret-model", True),
    GuestModelCase("relative_dot", "./outside", True),
    GuestModelCase("parent", "../", True),
    GuestModelCase("deep_relative", "a/b/c", True),
    GuestModelCase("nul_byte", "nul\x00byte", True),
    GuestModelCase("unknown_user_home", "~no-such-user-xyz/x", True),
)


def build_guest_disk(root: Path) -> dict[str, Path]:
    """The folders GUEST_MODEL_CASES and GUEST_PATH_CASES name: {'listed': …, 'outside': …} under
    `root`. `outside` also holds what looks like an SAE folder (`secret-sae/cfg.json`) and a Gemma
    Scope file (`params.npz`)."""
    (root / "listed" / "model").mkdir(parents=True)
    (root / "outside" / "secret-model").mkdir(parents=True)
    (root / "outside" / "notes.txt").write_text("private")
    (root / "outside" / "secret-sae").mkdir()
    (root / "outside" / "secret-sae" / "cfg.json").write_text("{}")
    (root / "outside" / "params.npz").write_bytes(b"PK\x05\x06" + bytes(18))
    (root / "listed" / "escape").symlink_to(root / "outside")
    return {"listed": root / "listed", "outside": root / "outside"}


# Paths and remote specs a guest types for analysis files (issue 28): SAE folders and params.npz
# (the Features page's "SAE folder"), and the kinds later pages declare (lens files, prompt sets,
# places to write). Checked by `Access.check_input(spec, kind)`: allowed inside a listed folder
# (symlinks followed), else refused with one message (`access.refused`) whatever is there.
# `hub_allows`: allowed instead when the server was started with --guest-hub. Run by
# tests/unit/test_access.py and, for the inputs of access.PATH_INPUTS, tests/app/test_guest_paths.py.
@dataclass(frozen=True)
class GuestPathCase:
    name: str
    kind: str  # a key of lib.app.access.KINDS
    spec: str
    refused: bool
    hub_allows: bool = False


GUEST_PATH_CASES = (
    GuestPathCase("sae_in_listed_folder", "sae", "{listed}/model", False),
    GuestPathCase("sae_missing_in_listed_folder", "sae", "{listed}/no-such-sae", False),
    GuestPathCase("npz_in_listed_folder", "sae", "{listed}/model/params.npz", False),
    GuestPathCase("sae_through_dotdot_into_listed", "sae", "{outside}/../listed/model", False),
    GuestPathCase("sae_folder_outside", "sae", "{outside}/secret-sae", True),
    GuestPathCase("npz_outside", "sae", "{outside}/params.npz", True),
    GuestPathCase("file_outside", "sae", "{outside}/notes.txt", True),
    GuestPathCase("nothing_outside", "sae", "{outside}/no-such-sae", True),
    GuestPathCase("folder_outside", "sae", "{outside}", True),
    GuestPathCase("system_folder", "sae", "/etc", True),
    GuestPathCase("system_file", "sae", "/etc/passwd", True),
    GuestPathCase("missing_absolute", "sae", "/nonexistent-xyz", True),
    GuestPathCase("root", "sae", "/", True),
    GuestPathCase("home", "sae", "~", True),
    GuestPathCase("dotdot_escape", "sae", "{listed}/../outside/secret-sae", True),
    GuestPathCase("symlink_escape", "sae", "{listed}/escape/secret-sae", True),
    GuestPathCase("relative", "sae", "secret-sae", True),
    GuestPathCase("nul_byte", "sae", "nul\x00byte", True),
    GuestPathCase("unknown_user_home", "sae", "~no-such-user-xyz/sae", True),
    GuestPathCase("hf_spec", "sae", "hf:google/gemma-scope-2b-pt-res/layer_20", True, hub_allows=True),
    GuestPathCase("hub_shaped_without_hf", "sae", "google/gemma-scope-2b-pt-res", True),
    GuestPathCase("hf_spec_leading_out_of_the_snapshot", "sae", "hf:owner/repo/../../../../etc", True),
    GuestPathCase("hf_spec_without_a_repo", "sae", "hf:owner", True),
    GuestPathCase("hf_spec_dotdot_repo", "sae", "hf:../../etc", True),
    GuestPathCase("lens_in_listed_folder", "lens", "{listed}/model/lens.pt", False),
    GuestPathCase("lens_outside", "lens", "{outside}/notes.txt", True),
    GuestPathCase("lens_hf_spec", "lens", "hf:owner/repo/lens.pt", True),
    GuestPathCase("set_outside", "set", "{outside}/notes.txt", True),
    GuestPathCase("destination_in_listed_folder", "destination", "{listed}/report.html", True),
    GuestPathCase("destination_outside", "destination", "{outside}/report.html", True),
)
# --- SAE files (issue 13): each refused with one plain message through library, CLI and app ----

SAE_CASE_NAMES = (
    "not_an_sae_folder", "unknown_architecture", "wrong_shapes", "damaged_safetensors", "damaged_npz",
    "other_width", "other_model", "layer_without_sae",
)


@dataclass(frozen=True)
class SaeCase:
    name: str
    path: str
    layer: int | None
    refused: str  # a phrase of the message


def build_sae_cases(root: Path, d_model: int, model_name: str) -> dict[str, SaeCase]:
    """SAE folders that cannot be used on a model of width `d_model` named `model_name`: each is
    a good SAELens folder (at residual 1) with one thing wrong."""
    import torch

    from lib.analyses.common.sae import save_saelens

    def good(name: str, d: int = d_model, model: str = model_name) -> Path:
        g = torch.Generator().manual_seed(0)
        return save_saelens(
            root / name, W_enc=torch.randn(d, 16, generator=g), b_enc=torch.zeros(16),
            W_dec=torch.randn(16, d, generator=g), b_dec=torch.zeros(d), architecture="standard",
            hook_name="blocks.1.hook_resid_pre", model_name=model, dtype="float32",
        )

    def edit_cfg(folder: Path, **changes) -> Path:
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg.update(changes)
        (folder / "cfg.json").write_text(json.dumps(cfg))
        return folder

    not_sae = root / "not_an_sae_folder"
    not_sae.mkdir(parents=True)
    (not_sae / "notes.txt").write_text("holiday photos")
    wrong = good("wrong_shapes")
    from safetensors.torch import load_file, save_file

    tensors = load_file(wrong / "sae_weights.safetensors")
    tensors["W_dec"] = tensors["W_dec"][:, :-1].contiguous()
    save_file(tensors, str(wrong / "sae_weights.safetensors"))
    damaged = good("damaged_safetensors")
    data = (damaged / "sae_weights.safetensors").read_bytes()
    (damaged / "sae_weights.safetensors").write_bytes(data[: len(data) // 3])
    npz = root / "damaged_npz"
    npz.mkdir()
    (npz / "params.npz").write_bytes(b"PK\x03\x04" + bytes(range(200)))
    cases = [
        SaeCase("not_an_sae_folder", str(not_sae), None, "not an SAE folder"),
        SaeCase("unknown_architecture", str(edit_cfg(good("unknown_architecture"), architecture="gated")),
                None, "architecture 'gated'"),
        SaeCase("wrong_shapes", str(wrong), None, "wrong shape"),
        SaeCase("damaged_safetensors", str(damaged), None, "damaged"),
        SaeCase("damaged_npz", str(npz), None, "damaged"),
        SaeCase("other_width", str(good("other_width", d=d_model + 8, model="gemma-2-2b")), None,
                f"width {d_model + 8}"),
        SaeCase("other_model", str(good("other_model", model="gemma-2-2b")), None, "trained on gemma-2-2b"),
        SaeCase("layer_without_sae", str(good("layer_without_sae")), 2, "not residual 2"),
    ]
    assert tuple(c.name for c in cases) == SAE_CASE_NAMES
    return {case.name: case for case in cases}


@pytest.fixture(scope="session")
def sae_cases(tmp_path_factory, tiny_models) -> dict[str, SaeCase]:
    """Bad SAEs for the tiny Llama (whose folder is `tiny_folders["llama"]`)."""
    llama = tiny_models["llama"]
    return build_sae_cases(tmp_path_factory.mktemp("bad-saes"), llama.d_model, llama.name)
@dataclass(frozen=True)
class ComponentCase:
    """Settings of the Components view (issue 14) that must be refused with one plain message.

    `options` are the CLI's flags for `twinlens components A B …`; the library and page tests map
    them to `answer`, `wrong`, `per_position` (see tests/unit/test_components_cli.py)."""

    name: str
    a: str
    b: str
    options: tuple[str, ...]
    refused: str


COMPONENT_CASES = (
    ComponentCase("same_answer_and_wrong", GOOD, "The capital of Italy is",
                  ("--answer", " Paris", "--wrong", " Paris"), "same"),
    ComponentCase("per_position_grid_of_unequal_lengths", GOOD,
                  "The capital of France, a country in western Europe, is",
                  ("--answer", " Paris", "--wrong", " Rome", "--patch", "heads", "--per-position"),
                  "same length in tokens"),
)


# `twinlens circuit A B …` (issue 27): the same shape as the component cases, its own flags.
CIRCUIT_CASES = (
    ComponentCase("circuit_of_unequal_lengths", GOOD,
                  "The capital of France, a country in western Europe, is",
                  ("--answer", " Paris", "--wrong", " Rome"), "same length in tokens"),
    ComponentCase("circuit_same_answer_and_wrong", GOOD, "The capital of Italy is",
                  ("--answer", " Paris", "--wrong", " Paris"), "same"),
    ComponentCase("circuit_ig_steps_zero", GOOD, "The capital of Italy is",
                  ("--answer", " Paris", "--wrong", " Rome", "--ig-steps", "0"), "1 to 256 steps"),
    ComponentCase("circuit_share_above_one", GOOD, "The capital of Italy is",
                  ("--answer", " Paris", "--wrong", " Rome", "--share", "1.5"), "at most 1"),
    ComponentCase("circuit_negative_edges", GOOD, "The capital of Italy is",
                  ("--answer", " Paris", "--wrong", " Rome", "--edges", "-3"), "0 edges or more"),
)


def circuit_kwargs(case: ComponentCase) -> dict:
    """The library's keyword arguments (`find_circuit`) for a circuit case's CLI flags."""
    flags = list(case.options)
    kwargs: dict = {}
    for flag, key, kind in (("--answer", "answer", str), ("--wrong", "wrong", str), ("--edges", "edges", int),
                            ("--share", "share", float), ("--ig-steps", "ig_steps", int)):
        if flag in flags:
            kwargs[key] = kind(flags[flags.index(flag) + 1])
    return kwargs


def component_kwargs(case: ComponentCase) -> dict:
    """The library's keyword arguments for a case's CLI flags."""
    flags = list(case.options)
    kwargs: dict = {"per_position": "--per-position" in flags}
    for flag, key in (("--answer", "answer"), ("--wrong", "wrong")):
        if flag in flags:
            kwargs[key] = flags[flags.index(flag) + 1]
    return kwargs
# Steering, continuations and chat (issue 12): each case is `twinlens steer|generate GOOD B …` on
# the tiny GPT-2 (or the folder a case names), refused with one message containing `refused`.
STEER_B = "The capital of Italy is"
FAILING_CHAT_TEMPLATE = "{{ raise_exception('this template takes no user messages') }}"


@dataclass(frozen=True)
class SteerCase:
    name: str
    args: tuple[str, ...]  # after the command and the two prompts; {file:NAME} = a file of steer_files
    refused: str
    command: str = "steer"
    model: str = "gpt2"  # a key of steer_files' models: gpt2, failing_template


STEER_CASES = (
    SteerCase("coefficient_to_nan", ("--layer", "1", "--alpha", "1e30"),
              "times as long as the residual it is added to"),
    SteerCase("coefficient_far_beyond_the_residual", ("--layer", "1", "--alpha", "1e9"),
              "which only makes gibberish; use |α| ≤"),
    SteerCase("coefficient_not_a_number", ("--layer", "1", "--alpha", "nan"), "finite number"),
    SteerCase("target_over_the_context", ("--layer", "1", "--target", "the " * 200), "reads at most 128"),
    SteerCase("new_tokens_beyond_the_context", ("--layer", "1", "--max-new-tokens", "200"),
              "reads at most 128"),
    SteerCase("empty_third_prompt", ("--layer", "1", "--target", "   "), "target prompt is empty"),
    SteerCase("layer_out_of_range", ("--layer", "9"), "layers 0 to 3"),
    SteerCase("aligned_with_different_lengths", ("--layer", "1", "--vector", "aligned", "--target", "Hi"),
              "positions but the target prompt has"),
    SteerCase("vector_file_for_another_model", ("--layer", "1", "--vector-file", "{file:other_model}"),
              "made with the model"),
    SteerCase("vector_file_for_another_site", ("--layer", "1", "--vector-file", "{file:other_site}"),
              "not layer 1"),
    SteerCase("corrupt_vector_file", ("--layer", "1", "--vector-file", "{file:corrupt}"), "damaged"),
    SteerCase("chat_without_a_template", ("--chat",), "no chat template", command="generate"),
    SteerCase("chat_template_that_fails", ("--chat",), "failed to render", command="generate",
              model="failing_template"),
    SteerCase("new_tokens_zero", ("--max-new-tokens", "0"), "from 1 to", command="generate"),
)


@pytest.fixture(scope="session")
def steer_files(tmp_path_factory, tiny_folders) -> dict[str, str]:
    """Vector files and model folders the steering cases name (see SteerCase.args / .model)."""
    from lib.analyses.steering import steering_vector
    from lib.core.capture import capture
    from lib.core.models import load_model

    root = tmp_path_factory.mktemp("steer-cases")
    llama, gpt2 = load_model(str(tiny_folders["llama"])), load_model(str(tiny_folders["gpt2"]))
    other_model = steering_vector(llama, capture(llama, GOOD), capture(llama, STEER_B), 1)
    other_site = steering_vector(gpt2, capture(gpt2, GOOD), capture(gpt2, STEER_B), 3)
    files = {"other_model": other_model.to_bytes(), "other_site": other_site.to_bytes(),
             "corrupt": other_site.to_bytes()[:100] + bytes(range(50))}
    paths = {}
    for name, data in files.items():
        (root / f"{name}.safetensors").write_bytes(data)
        paths[name] = str(root / f"{name}.safetensors")
    failing = root / "failing_template"
    shutil.copytree(tiny_folders["gpt2"], failing)
    config_path = failing / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = FAILING_CHAT_TEMPLATE
    config_path.write_text(json.dumps(config))
    paths["gpt2"], paths["failing_template"] = str(tiny_folders["gpt2"]), str(failing)
    return paths


def steer_case_argv(case: SteerCase, files: dict[str, str]) -> list[str]:
    """The full command line of a case (without the program name)."""
    args = [files[a[len("{file:"):-1]] if a.startswith("{file:") else a for a in case.args]
    return [case.command, GOOD, STEER_B, *args, "--model", files[case.model]]


# Two sets of prompts (issue 26): each case is refused with one message that names the rows, in the
# library, `twinlens sets`, the Sets page and the browser. `a` and `b` are two lists (one prompt a
# line); with `b` None, `a` is a CSV table of pairs.
@dataclass(frozen=True)
class SetsCase:
    name: str
    a: str
    b: str | None
    paired: bool
    refused: str


SETS_CASES = (
    SetsCase("empty_lines", "one\n\ntwo\n \nthree", "x\ny\nz", False,
             "Set A has empty lines at rows 2 and 4"),
    SetsCase("unequal_lengths_declared_paired", "one\ntwo\nthree", "x\ny", True,
             "as many prompts in A as in B (A has 3, B has 2)"),
    SetsCase("csv_without_the_columns", "x,y\n1,2\n3,4\n", None, True, "columns 'a' and 'b'"),
    SetsCase("duplicates", "one\ntwo\none", "x\ny\nz", False, "Set A repeats prompts at row 3 (= row 1)"),
    SetsCase("a_set_of_one", "one", "x\ny", False, "Set A has 1 prompt"),
    SetsCase("more_than_the_limit", "\n".join(f"p{i}" for i in range(1001)), "x\ny", False,
             "Set A has 1,001 prompts; the limit is 1,000"),
    SetsCase("a_prompt_over_the_context", "one\n" + "the " * 200, "x\ny\n" + "the " * 150, False,
             "reads at most 128 tokens; longer are A row 2 (202 tokens), B row 3 (152 tokens)"),
)


def sets_case_files(case: SetsCase, folder: Path) -> list[str]:
    """The files `twinlens sets` reads for a case: a.txt and b.txt, or one table.csv."""
    if case.b is None:
        (folder / "table.csv").write_text(case.a)
        return [str(folder / "table.csv")]
    (folder / "a.txt").write_text(case.a)
    (folder / "b.txt").write_text(case.b)
    return [str(folder / "a.txt"), str(folder / "b.txt")]
