"""Named sites and the one intervention mechanism, on every tiny family (lib.core.sites, backend, hooks)."""

from __future__ import annotations

import pytest
import torch

from lib.core.backend import Intervention
from lib.core.capture import capture
from lib.core.errors import SettingsError
from lib.core.sites import Site, residual_sites

TEXT = "The capital of France is Paris"


def ids(model, text: str = TEXT) -> torch.Tensor:
    return torch.tensor([capture(model, text).token_ids])


def test_site_names_are_transformer_lens_hook_names():
    names = [
        "blocks.0.hook_resid_pre", "blocks.4.hook_resid_post", "blocks.2.hook_attn_out",
        "blocks.2.hook_mlp_out", "blocks.7.attn.hook_z", "blocks.1.attn.hook_pattern",
    ]
    assert [Site.parse(n).name for n in names] == names


def test_resid_post_of_block_l_is_twinlens_residual_l_plus_one():
    assert Site.parse("blocks.5.hook_resid_post").residual == 6
    assert Site.parse("blocks.5.hook_resid_pre").residual == 5
    assert Site.parse("blocks.5.hook_resid_post").canonical(30) == Site(6, "resid_pre")
    assert Site.residual_at(30, 30).name == "blocks.29.hook_resid_post"


@pytest.mark.parametrize("name", ["blocks.x.hook_resid_pre", "hook_embed", "blocks.1.hook_q", ""])
def test_unknown_site_names_are_refused_plainly(name):
    with pytest.raises(SettingsError, match="not a site name"):
        Site.parse(name)


def test_a_site_past_the_last_block_is_refused_naming_both(family_model):
    n = family_model.n_layers
    with pytest.raises(SettingsError, match=f"blocks.{n}.hook_mlp_out is not in this model.*0 to {n - 1}"):
        family_model.backend.run(ids(family_model), sites=[Site(n, "mlp_out")])


def test_resid_post_reads_the_same_vector_as_the_next_residual(family_model):
    """blocks.ℓ.hook_resid_post, recorded on block ℓ's output or block ℓ+1's input, is residual ℓ+1."""
    n = family_model.n_layers
    cap = capture(family_model, TEXT)
    sites = [Site(layer, "resid_post") for layer in range(n)]
    run = family_model.backend.run(ids(family_model), sites=sites)
    for layer, site in enumerate(sites):
        torch.testing.assert_close(run.activations[site][0], cap.residual[layer + 1], rtol=0, atol=0)


def test_each_block_adds_its_attention_and_mlp_outputs_to_the_residual(family_model):
    """resid_post ℓ − resid_pre ℓ = attn_out ℓ + mlp_out ℓ (sequential and parallel blocks alike)."""
    n = family_model.n_layers
    sites = [Site(layer, kind) for layer in range(n) for kind in ("attn_out", "mlp_out")]
    run = family_model.backend.run(ids(family_model), sites=[*sites, *residual_sites(n)])
    for layer in range(n):
        pre = run.activations[Site.residual_at(layer, n)].double()
        post = run.activations[Site.residual_at(layer + 1, n)].double()
        attn, mlp = (run.activations[Site(layer, kind)].double() for kind in ("attn_out", "mlp_out"))
        parts = attn + mlp
        torch.testing.assert_close(post - pre, parts, rtol=1e-4, atol=1e-4)


def test_hook_z_splits_the_output_projection_input_by_head(family_model):
    arch = family_model.architecture
    site = Site(0, "z")
    run = family_model.backend.run(ids(family_model), sites=[site])
    z = run.activations[site]
    assert z.shape[:3] == (1, ids(family_model).shape[1], arch.n_heads)
    out_proj = arch.block_parts(0).out_proj
    width = out_proj.in_features if hasattr(out_proj, "in_features") else out_proj.weight.shape[0]
    assert z.shape[2] * z.shape[3] == width


def test_replacing_a_site_with_its_own_value_changes_nothing(family_model):
    """The mechanism itself is exact: writing every site's recorded value back is the identity."""
    n = family_model.n_layers
    sites = [Site(1, "z"), Site(1, "attn_out"), Site(0, "mlp_out"), Site.residual_at(1, n)]
    plain = family_model.backend.run(ids(family_model), sites=sites)
    again = family_model.backend.run(
        ids(family_model),
        interventions=[Intervention(s, "replace", plain.activations[s][0].flatten(-2) if s.kind == "z"
                                    else plain.activations[s][0]) for s in sites],
    )
    torch.testing.assert_close(again.logits, plain.logits, rtol=0, atol=0)


def test_adding_a_vector_at_a_residual_shifts_it_exactly_there(family_model):
    n = family_model.n_layers
    site = Site.residual_at(2, n)
    vector = torch.randn(family_model.d_model, generator=torch.Generator().manual_seed(0))
    plain = family_model.backend.run(ids(family_model), sites=[site])
    steered = family_model.backend.run(
        ids(family_model), sites=[site], interventions=[Intervention(site, "add", vector, positions=(1, 3))]
    )
    diff = steered.activations[site][0] - plain.activations[site][0]
    expected = torch.zeros_like(diff)
    expected[[1, 3]] = vector.to(diff.dtype)
    torch.testing.assert_close(diff, expected, rtol=1e-5, atol=1e-5)
    assert not torch.equal(steered.logits, plain.logits)


def test_adding_zero_is_the_identity(family_model):
    site = Site(1, "mlp_out")
    plain = family_model.backend.run(ids(family_model))
    zero = family_model.backend.run(
        ids(family_model), interventions=[Intervention(site, "add", torch.zeros(family_model.d_model))]
    )
    torch.testing.assert_close(zero.logits, plain.logits, rtol=0, atol=0)


def test_zeroing_one_head_touches_only_that_head(family_model):
    site = Site(0, "z")
    plain = family_model.backend.run(ids(family_model), sites=[site])
    ablated = family_model.backend.run(
        ids(family_model), sites=[site],
        interventions=[Intervention(site, "replace", torch.zeros(1), head=1)],
    )
    z0, z1 = plain.activations[site][0], ablated.activations[site][0]
    assert torch.count_nonzero(z1[:, 1]) == 0
    torch.testing.assert_close(z1[:, [0, *range(2, z0.shape[1])]], z0[:, [0, *range(2, z0.shape[1])]])


def test_reduce_runs_on_the_run_and_returns_only_its_result(family_model):
    site = Site(1, "resid_pre")
    norm = family_model.backend.run(
        ids(family_model), sites=[site], reduce=lambda run: float(run.activations[site].norm())
    )
    assert isinstance(norm, float) and norm > 0


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        ({"op": "multiply"}, "Unknown intervention"),
        ({"site": Site(0, "pattern")}, "read, not changed"),
        ({"head": 0}, "has heads"),
        ({"rows": (0, 1), "positions": (0,)}, "as many rows as positions"),
    ],
)
def test_malformed_interventions_are_refused(kwargs, phrase):
    args = {"site": Site(0, "mlp_out"), "op": "add", "value": torch.zeros(2), **kwargs}
    with pytest.raises(SettingsError, match=phrase):
        Intervention(**args)
