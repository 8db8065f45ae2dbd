"""Performance as behaviour: how many forward passes run, how large a logits tensor may get, what
is loaded twice and what is refused before any work. No wall-clock times (see `make bench`)."""

from __future__ import annotations

import gc
import os
import shutil
import weakref

import pytest
import torch

import lib.analyses.common.lens as lens
from lib.analyses.common.lens import lens_cells, lens_column, lens_columns, lens_grid, position_window
from lib.analyses.compare import compare_captures, compare_prompts
from lib.core.capture import capture, check_length
from lib.core.errors import PromptError
from lib.core.models import load_model, pick_device, pick_dtype

CELLS_PER_CHUNK = 4


def words(n: int) -> str:
    """A text of exactly n tokens on the tiny tokenizer (and on SmolLM2's): ' the' is one token."""
    return " the" * n


@pytest.fixture
def largest_logits(family_model, monkeypatch):
    """Small lens chunks, and a record of the largest output the unembedding ever produced
    (the model's own forward pass and every lens chunk both go through it)."""
    monkeypatch.setattr(lens, "CHUNK_FLOATS", CELLS_PER_CHUNK * family_model.vocab_size)
    seen = [0]

    def record(module, args, output):
        seen[0] = max(seen[0], output.numel())

    handle = family_model.architecture.unembed.register_forward_hook(record)
    yield seen
    handle.remove()


def test_compare_runs_exactly_one_forward_pass_per_prompt(family_model):
    before = family_model.forward_passes
    compare_prompts(family_model, "The capital of France is", "The capital of Italy is", top_k=3)
    assert family_model.forward_passes - before == 2


def test_long_prompt_never_builds_more_logits_than_one_chunk(family_model, largest_logits):
    text = words(family_model.max_tokens)  # the longest prompt the model accepts
    compare_prompts(family_model, text, text.replace(" the", " fox", 1), top_k=5)
    cap = capture(family_model, text)
    every_cell = [(layer, p) for layer in range(cap.residual.shape[0]) for p in range(cap.n_tokens)]
    assert len(lens_cells(family_model, cap.residual, every_cell, 3)) == len(every_cell)
    lens_grid(family_model, cap, position_window(cap.n_tokens, 16), 3)
    assert 0 < largest_logits[0] <= CELLS_PER_CHUNK * family_model.vocab_size
    assert largest_logits[0] < cap.n_tokens * family_model.vocab_size  # not even one layer's worth


def test_forward_pass_keeps_logits_of_the_last_position_only(family_model, largest_logits):
    cap = capture(family_model, words(100))
    assert largest_logits[0] == family_model.vocab_size
    assert cap.final_logits.shape == (family_model.vocab_size,)


def test_comparison_reads_the_unembedding_once_for_both_prompts(family_model):
    cap_a, cap_b = capture(family_model, "The capital of France is"), capture(family_model, words(9))
    calls = []
    handle = family_model.architecture.unembed.register_forward_hook(lambda *_: calls.append(1))
    try:
        compare_captures(family_model, cap_a, cap_b, top_k=3)
    finally:
        handle.remove()
    assert len(calls) == 1


def test_lens_columns_together_equal_each_column_alone(family_model):
    caps = [capture(family_model, "The capital of France is"), capture(family_model, words(9))]
    together = lens_columns(family_model, [c.residual for c in caps], -2, 4)
    for cap, column in zip(caps, together, strict=True):
        alone = lens_column(family_model, cap.residual, -2, 4)
        assert [(c.layer, c.position) for c in column] == [(c.layer, c.position) for c in alone]
        assert [[t.id for t in c.top] for c in column] == [[t.id for t in c.top] for c in alone]
        assert [c.entropy_bits for c in column] == pytest.approx([c.entropy_bits for c in alone], abs=1e-4)


def test_capture_keeps_the_residual_in_the_model_dtype(family_model):
    cap = capture(family_model, words(10))
    assert cap.residual.dtype == family_model.dtype
    assert cap.residual.shape == (family_model.n_layers + 1, 10, family_model.d_model)


def test_prompt_at_the_context_limit_is_accepted(family_model):
    assert family_model.max_tokens == 128
    check_length(family_model, 128)
    assert capture(family_model, words(128)).n_tokens == 128


def test_prompt_over_the_context_limit_is_refused_naming_the_limit_before_any_pass(family_model):
    before = family_model.forward_passes
    with pytest.raises(PromptError, match=r"129 tokens.*at most 128"):
        compare_prompts(family_model, words(129), "The capital of Italy is")
    assert family_model.forward_passes == before


def test_loading_the_same_folder_again_returns_the_model_in_use(tiny_folders, tmp_path):
    folder = shutil.copytree(tiny_folders["llama"], tmp_path / "llama")
    first = load_model(str(folder))
    assert load_model(str(folder)) is first
    assert load_model(str(folder), dtype="bfloat16") is not first


def test_a_changed_folder_is_read_again(tiny_folders, tmp_path):
    folder = shutil.copytree(tiny_folders["gpt2"], tmp_path / "gpt2")
    first = load_model(str(folder))
    stamp = os.stat(folder / "config.json").st_mtime_ns + 1_000_000_000
    os.utime(folder / "config.json", ns=(stamp, stamp))
    assert load_model(str(folder)) is not first


def test_loading_keeps_no_model_alive_by_itself(tiny_folders, tmp_path):
    folder = shutil.copytree(tiny_folders["gpt2"], tmp_path / "gpt2")
    alive = weakref.ref(load_model(str(folder)))
    gc.collect()
    assert alive() is None


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device("auto").type == "cpu"


def test_auto_dtype_is_float32_on_cpu_and_half_on_accelerators():
    assert pick_dtype("auto", torch.device("cpu")) == torch.float32
    assert pick_dtype("auto", torch.device("cuda")) == torch.float16
    assert pick_dtype("float32", torch.device("cuda")) == torch.float32
