"""Patching's "B after the patch" read with the chosen lens, on every tiny family: the identity lens
(J = I, a tuned lens with zero translators) gives the logit lens's readout exactly, and at the last
layer every lens is the model's own distribution of the patched run; the result says which lens."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.common.lenses import lens_for, save_jacobian, save_tuned
from lib.analyses.patching import patched_lens, patched_lens_captures
from lib.core.capture import capture
from lib.core.errors import LensError

A, B = "The capital of France is", "The capital of Italy is"


def ids(patched):
    return [[t.id for t in top] for top in patched.lens]


def probs(patched):
    return [[t.prob for t in top] for top in patched.lens]


def identity_lenses(loaded, folder):
    """A Jacobian lens with J = I and a tuned lens with zero translators, written as the field's files
    and read back (every residual below the last one is 'transformed')."""
    d, n = loaded.d_model, loaded.n_layers
    jacobian = save_jacobian(folder / "identity.pt", {r: torch.eye(d) for r in range(1, n)}, n_prompts=1,
                             loaded=loaded)
    tuned = save_tuned(folder / "zero", {i: torch.zeros(d, d) for i in range(n)},
                       {i: torch.zeros(d) for i in range(n)}, loaded=loaded)
    return lens_for(loaded, "jacobian", jacobian), lens_for(loaded, "tuned", tuned)


def random_lenses(loaded, folder):
    g = torch.Generator().manual_seed(11)
    d, n = loaded.d_model, loaded.n_layers
    jacobian = save_jacobian(folder / "random.pt",
                             {r: torch.eye(d) + torch.randn(d, d, generator=g) for r in range(1, n)},
                             n_prompts=7, loaded=loaded)
    tuned = save_tuned(folder / "random", {i: 0.3 * torch.randn(d, d, generator=g) for i in range(n)},
                       {i: torch.randn(d, generator=g) for i in range(n)}, loaded=loaded)
    return lens_for(loaded, "jacobian", jacobian), lens_for(loaded, "tuned", tuned)


@pytest.fixture
def pair(family_model):
    return family_model, capture(family_model, A), capture(family_model, B)


def test_the_identity_lens_reads_the_patched_run_as_the_logit_lens_exactly(pair, tmp_path):
    loaded, cap_a, cap_b = pair
    layer, position = loaded.n_layers // 2, cap_b.n_tokens - 1
    plain = patched_lens_captures(loaded, cap_a, cap_b, layer, position, top_k=5)
    assert (plain.lens_kind, plain.lens_caption) == ("logit", "logit lens")
    for lens in identity_lenses(loaded, tmp_path):
        assert len(lens.transformed) >= loaded.n_layers - 1  # the identity is applied, not skipped
        read = patched_lens_captures(loaded, cap_a, cap_b, layer, position, top_k=5, lens=lens)
        assert read.lens_kind == lens.kind
        assert ids(read) == ids(plain) and probs(read) == probs(plain)  # exactly
        assert read.entropy_bits == plain.entropy_bits


def test_at_the_last_layer_every_lens_is_the_models_own_distribution(pair, tmp_path):
    loaded, cap_a, cap_b = pair
    last = loaded.n_layers
    own = torch.softmax(cap_a.final_logits.float(), -1).topk(5)  # A's own next-token distribution
    jacobian, tuned = random_lenses(loaded, tmp_path)
    middle = patched_lens_captures(loaded, cap_a, cap_b, last // 2, cap_b.n_tokens - 1, top_k=5)
    for lens in (None, jacobian, tuned):
        kwargs = {} if lens is None else {"lens": lens}
        # patching B's last residual with A's: the patched run's own distribution is A's
        read = patched_lens_captures(loaded, cap_a, cap_b, last, cap_b.n_tokens - 1, top_k=5, **kwargs)
        assert [t.id for t in read.lens[last]] == own.indices.tolist()
        assert [t.prob for t in read.lens[last]] == pytest.approx(own.values.tolist(), abs=1e-5)
        # a patch lower down: every lens agrees with the logit lens (the model's output path) at L
        at_middle = patched_lens_captures(loaded, cap_a, cap_b, last // 2, cap_b.n_tokens - 1, top_k=5,
                                          **kwargs)
        assert [t.id for t in at_middle.lens[last]] == [t.id for t in middle.lens[last]]
        assert [t.prob for t in at_middle.lens[last]] == pytest.approx([t.prob for t in middle.lens[last]],
                                                                       abs=1e-6)
    # below the last layer a random lens reads something else (the test can fail)
    changed = patched_lens_captures(loaded, cap_a, cap_b, last // 2, cap_b.n_tokens - 1, top_k=5,
                                    lens=jacobian)
    assert probs(changed)[:-1] != probs(middle)[:-1]
    assert changed.lens_caption == "Jacobian lens, fitted on 7 prompts"


def test_patched_lens_by_kind_reads_the_models_own_lens_or_says_it_has_none(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    last = capture(loaded, B).n_tokens - 1
    jacobian, _ = random_lenses(loaded, tmp_path)
    by_file = patched_lens(loaded, A, B, 1, last, top_k=3, lens="jacobian",
                           lens_file=str(tmp_path / "random.pt"))
    by_lens = patched_lens(loaded, A, B, 1, last, top_k=3, lens=jacobian)
    assert ids(by_file) == ids(by_lens)
    assert by_file.to_dict()["lens_caption"] == "Jacobian lens, fitted on 7 prompts"
    with pytest.raises(LensError) as caught:  # no shipped tuned lens for the tiny Llama: one sentence
        patched_lens(loaded, A, B, 1, last, lens="tuned")
    assert str(caught.value).startswith("twinlens has no tuned lens for") and "\n" not in str(caught.value)
