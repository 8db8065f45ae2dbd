"""Continuations and steering on the nnsight backend (issue 15): `generate` as one nnsight session
gives the hooks backend's tokens, token for token, on every tiny family — greedy, sampled with a
seed, and with a steering vector added during the prompt's pass and every new token's pass; the
first logits within 1e-5. nnsight's serialization path (remote="local") gives the same.
"""

from __future__ import annotations

import pytest
import torch

from lib.core.backend import Intervention
from lib.core.capture import capture
from lib.core.models import load_model
from lib.core.sites import Site

TEXT = "Claire and Mary went to the shops"


def _twin(family_model, tiny_folders, remote=False):
    return load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight", remote=remote)


def _steer(model) -> tuple[list[Intervention], list[Intervention]]:
    vector = 4 * torch.randn(model.d_model, generator=torch.Generator().manual_seed(1))
    site = Site.residual_at(1, model.n_layers)
    return [Intervention(site, "add", vector)], [Intervention(site, "add", vector, positions=(0,))]


def _same(a, b) -> None:
    assert b.token_ids == a.token_ids
    torch.testing.assert_close(b.first_logits, a.first_logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("how", ["greedy", "sampled", "steered"])
def test_generate_equals_the_hooks_backend(family_model, tiny_folders, how):
    twin = _twin(family_model, tiny_folders)
    ids = torch.tensor([capture(family_model, TEXT).token_ids]).expand(2, -1)
    settings: dict = {"eos_ids": [family_model.tokenizer.eos_token_id or 0]}
    if how == "sampled":
        settings.update(temperature=0.8, seed=3)
    if how == "steered":
        settings["interventions"], settings["step_interventions"] = _steer(family_model)
    passes = twin.forward_passes, family_model.forward_passes
    ours = twin.backend.generate(ids, 6, **settings)
    _same(family_model.backend.generate(ids, 6, **settings), ours)
    assert twin.forward_passes - passes[0] == family_model.forward_passes - passes[1]  # one per token
    if how == "steered":  # the vector really moved the continuation's first logits
        plain = family_model.backend.run(ids).logits
        assert (plain - ours.first_logits).abs().max() > 1e-3


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_generate_through_the_remote_serialization_path(tiny_models, tiny_folders, family):
    local = tiny_models[family]
    remote = load_model(str(tiny_folders[family]), backend="nnsight", remote="local")
    ids = torch.tensor([capture(local, TEXT).token_ids])
    before, during = _steer(local)
    settings = {"interventions": before, "step_interventions": during, "temperature": 0.7, "seed": 5}
    _same(local.backend.generate(ids, 6, **settings), remote.backend.generate(ids, 6, **settings))
    assert remote.backend.received_bytes < 2 * local.vocab_size * 4  # tokens and first logits only
