"""Model vs model on the Top-token diff and Logit lens: one prompt, each side read through its own model."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from tiny import build_tiny_model

from lib.analyses.common.lens import lens_grid
from lib.analyses.diff import top_token_diff
from lib.core.capture import capture
from lib.core.errors import ModelPairError
from lib.core.hooks import HooksBackend
from lib.core.models import load_model

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def others(partner_folders):
    return {name: load_model(str(folder)) for name, folder in partner_folders.items()}


@pytest.fixture(scope="module")
def wider(tmp_path_factory, tiny_tokenizer):
    """The tiny Llama with 8 more output tokens than its tokenizer (a fine-tune that added tokens)."""
    folder = tmp_path_factory.mktemp("wider") / "llama-wider"
    build_tiny_model("llama", folder, tokenizer=tiny_tokenizer, vocab_size=len(tiny_tokenizer) + 8)
    return load_model(str(folder))


def lens_probs(model, cap, layer: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.softmax(model.architecture.logits(cap.residual[layer, -1]).double(), -1)


def kl_bits_direct(p: torch.Tensor, q: torch.Tensor) -> float:
    return torch.nn.functional.kl_div(q.log(), p, reduction="sum").item() / math.log(2)


def test_model_against_a_copy_of_itself_has_zero_divergence_and_identical_grids(tiny_models):
    model1 = tiny_models["llama"]
    model2 = dataclasses.replace(model1, tokenizer=copy.deepcopy(model1.tokenizer))  # another object
    model2.backend = HooksBackend(model2)  # a copy gets its own backend (lib.core.models sets it at load)
    cap1, cap2 = capture(model1, PROMPT), capture(model2, PROMPT)
    diff = top_token_diff(model1, cap1, cap2, top_k=5, loaded_b=model2)
    assert len(diff.layers) == model1.n_layers + 1
    for layer in diff.layers:
        assert layer.kl_bits == pytest.approx(0.0, abs=1e-12)
        assert layer.js_bits == pytest.approx(0.0, abs=1e-12)
        assert layer.jaccard == 1.0 and layer.most_changed is None
        assert layer.top_a == layer.top_b
    positions = tuple(range(cap1.n_tokens))
    assert lens_grid(model1, cap1, positions, 5) == lens_grid(model2, cap2, positions, 5)


def test_two_models_diff_reads_each_side_through_its_own_model(tiny_models, others):
    model1, model2 = tiny_models["llama"], others["llama-seed1"]
    cap1, cap2 = capture(model1, PROMPT), capture(model2, PROMPT)
    diff = top_token_diff(model1, cap1, cap2, top_k=5, loaded_b=model2)
    for layer in diff.layers:
        p, q = lens_probs(model1, cap1, layer.layer), lens_probs(model2, cap2, layer.layer)
        m = (p + q) / 2
        js = (kl_bits_direct(p, m) + kl_bits_direct(q, m)) / 2
        assert layer.kl_bits == pytest.approx(kl_bits_direct(p, q), rel=1e-4, abs=1e-6)
        assert layer.js_bits == pytest.approx(js, rel=1e-4, abs=1e-6)
        assert [t.id for t in layer.top_b] == q.topk(5).indices.tolist()
    assert min(layer.js_bits for layer in diff.layers) > 0  # other weights: apart at every layer
    # the lens grid of side b is model 2's own lens: its last row is model 2's prediction
    grid = lens_grid(model2, cap2, (cap2.n_tokens - 1,), 5)
    assert grid.cells[-1][0].top[0].id == int(cap2.final_logits.argmax())
    assert [t.id for t in grid.cells[-1][0].top] == [t.id for t in diff.layers[-1].top_b]


def test_two_models_diff_refuses_other_tokenizers_and_other_depths(tiny_models, others):
    gpt2 = tiny_models["gpt2"]
    cap = capture(gpt2, PROMPT)
    other = others["gpt2-other-tokenizer"]
    with pytest.raises(ModelPairError, match="do not share a tokenizer"):
        top_token_diff(gpt2, cap, capture(other, PROMPT), loaded_b=other)
    shallow = others["gpt2-shallow"]
    with pytest.raises(ModelPairError, match="layer by layer.*3 layers.*2"):
        top_token_diff(gpt2, cap, capture(shallow, PROMPT), loaded_b=shallow)


def test_tokens_a_shorter_vocabulary_lacks_have_probability_zero_under_it(tiny_models, wider):
    narrow = tiny_models["llama"]
    assert wider.vocab_size == narrow.vocab_size + 8
    cap_n, cap_w = capture(narrow, PROMPT), capture(wider, PROMPT)
    k = narrow.vocab_size  # every token but 8 of the wider list: some added tokens are among them
    diff = top_token_diff(narrow, cap_n, cap_w, top_k=k, loaded_b=wider)
    added = [t for layer in diff.layers for t in layer.only_b if t.id >= narrow.vocab_size]
    assert added
    assert all(t.prob_a == 0.0 and t.rank_a == narrow.vocab_size + 1 and t.prob_b > 0 for t in added)
    for layer in diff.layers:
        assert math.isfinite(layer.kl_bits) and 0 < layer.js_bits <= 1
        assert all(t.id < narrow.vocab_size for t in layer.top_a)
        own = lens_probs(wider, cap_w, layer.layer)
        assert layer.entropy_b_bits == pytest.approx(float(-(own * own.log2()).sum()), rel=1e-4)
    # the other way round, the wider model puts mass on tokens the narrower cannot produce
    reverse = top_token_diff(wider, cap_w, cap_n, top_k=5, loaded_b=narrow)
    assert all(math.isinf(layer.kl_bits) and 0 < layer.js_bits <= 1 for layer in reverse.layers)
