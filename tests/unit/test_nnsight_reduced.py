"""The Compare view reduced inside the trace (issue 15): `compare_prompts` runs both prompts and
the lens, the model's own top-k and the distances as one nnsight session, so what comes back from
NDIF is a few kilobytes, never a residual stream.

Parity: on every tiny family the reduced comparison equals `compare_captures` on the hooks
backend's captures — exactly (the same operations on the same tensors; only where they run
differs), through the local session and through nnsight's serialization path (remote="local").
"""

from __future__ import annotations

import math

import pytest
import torch
from spy import returns_of

from lib.analyses.common.distances import capture_distances
from lib.analyses.common.lens import cell_detail, lens_grid
from lib.analyses.compare import compare_captures, compare_prompts
from lib.analyses.patching import patch_captures
from lib.core import nnsight_backend
from lib.core.backend import Run
from lib.core.capture import capture
from lib.core.errors import SettingsError
from lib.core.models import load_model
from lib.core.nnsight_backend import tensor_bytes
from lib.core.sites import Site

TEXT_A = "Claire and Mary went to the shops"
TEXT_B = "Claire and Kobe went"  # another length: the two passes need not line up
K = 5


def comparison_bytes(n_layers: int, k: int) -> int:
    """The tensor bytes `last_position_summary` sends back for one comparison (both prompts):
    lens top-k probabilities (float32) and ids (int64) and entropies (float32) at L+1 layers per
    prompt; the model's own top-k and entropy per prompt; two float64 distances per layer."""
    layers = n_layers + 1
    lens = 2 * layers * (k * 4 + k * 8 + 4)
    final = 2 * (k * 4 + k * 8 + 4)
    distances = 2 * layers * 8
    return lens + final + distances


@pytest.fixture
def hooks_reference(family_model):
    """The Compare view as the hooks backend computes it from two captures."""
    caps = capture(family_model, TEXT_A), capture(family_model, TEXT_B)
    return compare_captures(family_model, *caps, top_k=K).to_dict()


def test_reduced_comparison_on_the_hooks_backend_equals_the_captures(family_model, hooks_reference):
    assert compare_prompts(family_model, TEXT_A, TEXT_B, top_k=K).to_dict() == hooks_reference


@pytest.mark.parametrize("remote", [False, "local"])
def test_reduced_comparison_on_nnsight_equals_the_hooks_backend(
    family_model, tiny_folders, hooks_reference, remote, monkeypatch
):
    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight", remote=remote)
    sent_back = returns_of(monkeypatch, nnsight_backend, "_session")
    passes = twin.forward_passes

    assert compare_prompts(twin, TEXT_A, TEXT_B, top_k=K).to_dict() == hooks_reference

    assert twin.forward_passes == passes + 2  # one pass per prompt, both in one session (one job)
    # what came back: the reduction, and no tensor as large as even one layer's column of residuals
    (value,) = sent_back
    column = (family_model.n_layers + 1) * family_model.d_model
    sizes = [t.numel() for t in _tensors(value)]
    assert sizes and max(sizes) < column
    assert twin.backend.received_bytes == tensor_bytes(value) == comparison_bytes(family_model.n_layers, K)
    residual = capture(family_model, TEXT_A).residual
    assert twin.backend.received_bytes < residual.numel() * residual.element_size()


def test_logit_lens_and_distances_reduced_in_the_trace_equal_the_captures(
    family_model, tiny_folders, monkeypatch
):
    """On a model on NDIF a capture keeps no residual stream; the Logit lens grid, its cell detail
    and the Residual distances are then reduced where the model runs — and equal the hooks
    backend's from full captures."""
    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight", remote="local")
    texts = (TEXT_A, TEXT_B, TEXT_A.replace("Mary", "Kobe"))  # B is shorter; the third as long as A
    full = [capture(family_model, t) for t in texts]
    light = [capture(twin, t, keep_residual=False) for t in texts]
    assert all(c.residual is None for c in light)
    assert [c.token_ids for c in light] == [c.token_ids for c in full]
    torch.testing.assert_close(light[0].final_logits, full[0].final_logits, rtol=0, atol=0)
    sent_back = returns_of(monkeypatch, nnsight_backend, "_session")
    window = tuple(range(full[0].n_tokens))
    assert lens_grid(twin, light[0], window, K) == lens_grid(family_model, full[0], window, K)
    assert twin.backend.received_bytes == (family_model.n_layers + 1) * len(window) * (12 * K + 4)
    for layer in (0, family_model.n_layers):
        assert cell_detail(twin, light[0], layer, 2, K) == cell_detail(family_model, full[0], layer, 2, K)
    assert twin.backend.received_bytes == 24 * K + 4  # docs/scale.md
    for other in (1, 2):  # lengths differ (last position only) / equal (layer × position too)
        for drop_first in (True, False):
            expected = capture_distances(family_model, full[0], full[other], drop_first=drop_first)
            assert capture_distances(twin, light[0], light[other], drop_first=drop_first) == expected
    assert expected.positions is not None
    column = (family_model.n_layers + 1) * family_model.d_model
    assert max(t.numel() for value in sent_back for t in _tensors(value)) < column * len(window)


def test_bytes_per_comparison_do_not_grow_with_the_prompt(tiny_models, tiny_folders):
    """The reduced result depends on layers and top-k only; a residual stream grows with the prompt."""
    twin = load_model(str(tiny_folders["llama"]), backend="nnsight", remote="local")
    compare_prompts(twin, "Hi", "Yo", top_k=K)
    short = twin.backend.received_bytes
    long_text = " ".join(["Claire and Mary went to the shops"] * 8)
    compare_prompts(twin, long_text, long_text + " again", top_k=K)
    assert twin.backend.received_bytes == short == comparison_bytes(twin.n_layers, K)


def test_the_lens_is_chunked_inside_the_reduction(tiny_models, monkeypatch):
    """Never layers × positions × vocabulary: with a chunk of 3 rows the lens runs in pieces of at
    most 3 × vocab logits and gives the same comparison."""
    from lib.analyses.common import lens

    model = tiny_models["gpt2"]
    whole = compare_prompts(model, TEXT_A, TEXT_B, top_k=K).to_dict()
    seen = []
    logits = type(model.architecture).logits

    def spy(architecture, hidden):
        seen.append(hidden.shape[0])
        return logits(architecture, hidden)

    monkeypatch.setattr(lens, "CHUNK_FLOATS", 3 * model.vocab_size)
    monkeypatch.setattr(type(model.architecture), "logits", spy)
    chunked = compare_prompts(model, TEXT_A, TEXT_B, top_k=K).to_dict()
    assert seen and max(seen) <= 3 and sum(seen) == 2 * (model.n_layers + 1)
    assert chunked["distance"] == whole["distance"]
    assert [[t["id"] for t in row] for row in chunked["a"]["lens"]] == [
        [t["id"] for t in row] for row in whole["a"]["lens"]
    ]


def _tensors(value) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def test_the_load_time_lens_check_runs_where_the_model_is_and_sends_back_one_number(
    family_model, tiny_folders
):
    """A model on NDIF has no weights here: `check_lens_remotely` runs the lens check in one job
    and gets back max |Δp| at the probe's last position — the local check's figure there."""
    from lib.core.architecture import probability_gap
    from lib.core.models import _PROBE_TEXT, check_lens_remotely

    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight", remote="local")
    gap = check_lens_remotely(twin)
    assert twin.backend.received_bytes == 4  # one float32
    ids = torch.tensor([family_model.tokenizer(_PROBE_TEXT)["input_ids"]])
    site = Site.residual_at(family_model.n_layers, family_model.n_layers)
    with torch.inference_mode():
        run = family_model.backend.run(ids, sites=[site])
        expected = probability_gap(family_model.architecture, run.activations[site][0, -1:], run.logits[:1])
    assert gap == pytest.approx(float(expected), abs=1e-7) and gap <= 1e-4


def test_the_remote_lens_check_refuses_a_lens_that_misses_the_model(tiny_folders):
    """Gemma-2's lens without its logit soft-cap misses the model's output: refused as at a local load."""
    import dataclasses

    from lib.core.errors import ArchitectureError
    from lib.core.models import check_lens_remotely

    twin = load_model(str(tiny_folders["gemma2"]), backend="nnsight", remote="local")
    twin.architecture = dataclasses.replace(twin.architecture, logit_softcap=None)
    with pytest.raises(ArchitectureError, match="'gemma2'.*does not reproduce"):
        check_lens_remotely(twin)


FRANCE, ITALY = "The capital of France is", "The capital of Italy is"
TOKENS = {"answer": 10, "wrong": 11}  # token ids: a random tiny model's own top-1s may coincide


@pytest.fixture
def patching_reference(family_model):
    """The patching grid from full captures on the hooks backend."""
    return patch_captures(family_model, capture(family_model, FRANCE), capture(family_model, ITALY), **TOKENS)


@pytest.mark.parametrize("remote", [False, "local"])
def test_patching_without_residual_streams_runs_a_inside_the_job_and_gives_the_grid(
    family_model, tiny_folders, patching_reference, remote
):
    """Captures that keep no residual stream (a model on NDIF): A runs again in the one session of
    B's patched runs (Backend.transplant); one float64 per cell comes back, and the grid is the
    hooks backend's."""
    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight", remote=remote)
    light = [capture(twin, text, keep_residual=False) for text in (FRANCE, ITALY)]
    passes = twin.forward_passes
    got = patch_captures(twin, *light, rows=4, **TOKENS)
    cells = (family_model.n_layers + 1) * light[1].n_tokens
    assert twin.forward_passes - passes == 1 + math.ceil(cells / 4)  # A once, then B's chunks
    assert twin.backend.received_bytes == 8 * cells
    assert (got.answer, got.wrong, got.positions) == (
        patching_reference.answer, patching_reference.wrong, patching_reference.positions
    )
    torch.testing.assert_close(torch.tensor(got.raw), torch.tensor(patching_reference.raw), rtol=0, atol=1e-4)


def test_the_hooks_backend_patches_captures_without_residuals_the_same_way(family_model, patching_reference):
    light = [capture(family_model, text, keep_residual=False) for text in (FRANCE, ITALY)]
    got = patch_captures(family_model, *light, **TOKENS)
    torch.testing.assert_close(torch.tensor(got.raw), torch.tensor(patching_reference.raw), rtol=0, atol=1e-4)


def test_transplanted_heads_and_components_equal_the_hooks_backend(tiny_models, tiny_folders):
    """Backend.transplant of a head's z, an attention output and a residual, several per row."""
    from lib.core.backend import Transplant

    model = tiny_models["llama"]
    ids = [torch.tensor([capture(model, text).token_ids]) for text in (FRANCE, ITALY)]
    n, every = model.n_layers, tuple(range(ids[1].shape[1]))
    rows = [
        [Transplant(Site(1, "z"), (p,), (p,), head=1)] for p in every
    ] + [
        [Transplant(Site(0, "attn_out"), every, every), Transplant(Site.residual_at(n, n), (0,), (1,))],
        [Transplant(Site(2, "mlp_out"), (4,), (3,)), Transplant(Site(1, "z"), every, every, head=0)],
    ]

    def reduce(run: Run) -> torch.Tensor:
        return run.logits[:, :6].double()

    expected = model.backend.transplant(*ids, rows, reduce, step=3)
    twin = load_model(str(tiny_folders["llama"]), backend="nnsight", remote="local")
    got = twin.backend.transplant(*ids, rows, reduce, step=3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    assert twin.backend.received_bytes == got.numel() * 8


def test_what_patching_without_residuals_refuses(family_model, tiny_models):
    light = [capture(family_model, text, keep_residual=False) for text in (FRANCE, ITALY)]
    with pytest.raises(SettingsError, match="scores each word by its first piece"):
        patch_captures(family_model, *light, answer=" Paris", wrong=" Rome", score="word")
    other = next(m for m in tiny_models.values() if m is not family_model)  # two models: A from another
    with pytest.raises(SettingsError, match="runs on local models only"):
        patch_captures(family_model, *light, model_a=other, **TOKENS)
    assert patch_captures(family_model, *light, model_a=family_model, **TOKENS).raw  # one model: it
