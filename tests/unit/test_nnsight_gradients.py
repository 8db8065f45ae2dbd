"""Attribution patching's gradients on the nnsight backend (issue 15): `gradients` runs the
backward pass inside the trace and equals the hooks backend's on every tiny family (1e-5), and
through nnsight's serialization path (remote="local")."""

from __future__ import annotations

import pytest
import torch

from lib.core.capture import capture
from lib.core.models import load_model
from lib.core.sites import Site, residual_sites

TEXT = "Claire and Mary went to the shops"


def _sites(model) -> list[Site]:
    kinds = ("attn_out", "mlp_out", "z")
    return [*residual_sites(model.n_layers), *(Site(l, k) for l in range(model.n_layers) for k in kinds)]


def _logit_difference(logits: torch.Tensor) -> torch.Tensor:
    return (logits[:, 5] - logits[:, 7]).sum()


def _same(ours, theirs) -> None:
    torch.testing.assert_close(ours.run.logits, theirs.run.logits, rtol=0, atol=1e-5)
    assert set(ours.grads) == set(theirs.grads)
    for site, grad in theirs.grads.items():
        torch.testing.assert_close(ours.grads[site], grad, rtol=1e-4, atol=1e-5)
        act = theirs.run.activations[site]
        torch.testing.assert_close(ours.run.activations[site], act, rtol=0, atol=1e-5)


def test_gradients_equal_the_hooks_backend(family_model, tiny_folders):
    twin = load_model(str(tiny_folders[family_model.architecture.family]), backend="nnsight")
    ids = torch.tensor([capture(family_model, TEXT).token_ids]).expand(2, -1)
    sites = _sites(family_model)
    ours = twin.backend.gradients(ids, sites, _logit_difference)
    theirs = family_model.backend.gradients(ids, sites, _logit_difference)
    _same(ours, theirs)
    assert max(g.abs().max() for g in ours.grads.values()) > 0  # the backward pass really ran


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_gradients_through_the_remote_serialization_path(tiny_models, tiny_folders, family):
    local = tiny_models[family]
    remote = load_model(str(tiny_folders[family]), backend="nnsight", remote="local")
    ids = torch.tensor([capture(local, TEXT).token_ids])
    sites = _sites(local)
    ours = remote.backend.gradients(ids, sites, _logit_difference)
    _same(ours, local.backend.gradients(ids, sites, _logit_difference))
