"""Entropy has one unit everywhere: bits (the lens, the cell detail, the diff, saved comparisons)."""

from __future__ import annotations

import math

import pytest
import torch

from lib.analyses.common.comparison import PromptResult
from lib.analyses.common.lens import cell_detail
from lib.analyses.compare import compare_prompts
from lib.analyses.diff import top_token_diff
from lib.core.capture import capture


def test_lens_entropy_is_in_bits_and_equals_the_diffs(tiny_models):
    llama = tiny_models["llama"]
    cap_a, cap_b = capture(llama, "The capital of France is"), capture(llama, "The capital of Italy is")
    comparison = compare_prompts(llama, cap_a.text, cap_b.text, top_k=3)
    logp = torch.log_softmax(cap_a.final_logits.float(), -1)
    bits = float(-(logp.exp() * logp).sum()) / math.log(2)
    assert comparison.a.entropy_bits[-1] == pytest.approx(bits, rel=1e-3)
    detail = cell_detail(llama, cap_a, llama.n_layers, cap_a.n_tokens - 1, 3)
    assert detail.entropy_bits == pytest.approx(bits, rel=1e-3)
    diff = top_token_diff(llama, cap_a, cap_b, top_k=3)
    assert diff.layers[-1].entropy_a_bits == pytest.approx(bits, rel=1e-3)


def test_a_comparison_saved_in_nats_reopens_in_bits(tiny_models):
    side = compare_prompts(tiny_models["gpt2"], "The capital of France is", "Rome", top_k=2).a
    saved = side.to_dict()
    assert "entropy_bits" in saved and "entropy" not in saved
    old = {k: v for k, v in saved.items() if k != "entropy_bits"} | {
        "entropy": [e * math.log(2) for e in side.entropy_bits]}
    assert PromptResult.from_dict(old).entropy_bits == pytest.approx(side.entropy_bits)
