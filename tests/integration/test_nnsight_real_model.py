"""The nnsight backend on the embedded SmolLM2-135M equals the hooks backend (tolerance 1e-5;
bit-identical with torch 2.13 on the CPU): the comparison, the patching grid, a steering effect,
a continuation token for token."""

from __future__ import annotations

import torch

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.compare import compare_captures, compare_prompts
from lib.analyses.generation import continue_prompt
from lib.analyses.patching import patch_residual
from lib.core.backend import Intervention
from lib.core.capture import capture
from lib.core.models import load_model
from lib.core.nnsight_backend import NnsightBackend
from lib.core.sites import Site

FRANCE, ITALY = "The capital of France is", "The capital of Italy is"


def _twin(real_model):
    twin = load_model("default", backend="nnsight")
    assert isinstance(twin.backend, NnsightBackend) and twin.model is real_model.model
    return twin


def test_comparison_and_patching_grid_are_the_same(real_model):
    twin = _twin(real_model)
    a = compare_captures(real_model, capture(real_model, FRANCE), capture(real_model, ITALY), top_k=5)
    b = compare_prompts(twin, FRANCE, ITALY, top_k=5)  # reduced inside one nnsight session
    assert b.to_dict() == a.to_dict()
    assert b.a.final[0].token == "␣Paris" and b.b.final[0].token == "␣Rome"
    assert [[t.id for t in row] for row in b.a.lens] == [[t.id for t in row] for row in a.a.lens]
    cosine_a, cosine_b = torch.tensor(a.distance.cosine), torch.tensor(b.distance.cosine)
    torch.testing.assert_close(cosine_b, cosine_a, rtol=0, atol=1e-5)
    grid_a, grid_b = patch_residual(real_model, FRANCE, ITALY), patch_residual(twin, FRANCE, ITALY)
    torch.testing.assert_close(torch.tensor(grid_b.effect), torch.tensor(grid_a.effect), rtol=0, atol=1e-5)


def test_steering_effect_is_the_same(real_model):
    twin = _twin(real_model)
    ids = torch.tensor([real_model.tokenizer(FRANCE)["input_ids"]])
    vector = torch.randn(real_model.d_model, generator=torch.Generator().manual_seed(0))
    steer = [Intervention(Site.residual_at(10, real_model.n_layers), "add", 4 * vector)]

    def shift(run):
        return torch.log_softmax(run.logits, -1)[0].max()

    torch.testing.assert_close(
        twin.backend.run(ids, interventions=steer, reduce=shift),
        real_model.backend.run(ids, interventions=steer, reduce=shift), rtol=0, atol=1e-5,
    )


def test_continuation_is_the_same_token_for_token(real_model):
    twin = _twin(real_model)
    settings = GenerationSettings(16)
    ours = continue_prompt(twin, FRANCE, settings=settings)
    theirs = continue_prompt(real_model, FRANCE, settings=settings)
    assert ours.token_ids == theirs.token_ids and len(ours.token_ids) > 3
