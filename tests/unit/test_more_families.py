"""More decoder families, for the support matrix: each is read faithfully or refused with a reason.

Every family in tests/tiny.py's EXTRA_FAMILIES (Qwen3, Gemma-3, OLMo-2, Mixtral and other MoE,
Falcon, BLOOM, GPT-J, StarCoder2, Cohere, Granite, Mamba, …) is built as a tiny random model from
its transformers config, saved and loaded with `load_model(folder)`, and checked three ways:

- the lens = model invariant: the lens at the last layer reproduces the model's own next-token
  probabilities at every position (families with an output step — Cohere's logit_scale,
  Granite's logits_scaling, RecurrentGemma's soft-cap — pass because the step is read);
- the named sites: where twinlens reads a block's attention and MLP, resid_post − resid_pre =
  attn_out + mlp_out; where it does not, asking for them says why;
- the nnsight backend reads the same residual stream as the hooks backend.

Only these three run per extra family (the full suite runs on tests/tiny.py's FAMILIES), so the
suite stays fast; `make matrix` lists the results in docs/support_matrix.md. `make test-fast` runs
them on a few of the families only ($TWINLENS_TEST_FAMILIES, tests/tiny.py `lane_families`).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tiny import EXTRA_FAMILIES, build_tiny_model, lane_families

from lib.core.architecture import check_lens, lens_tolerance
from lib.core.backend import Intervention
from lib.core.errors import ArchitectureError
from lib.core.models import load_model
from lib.core.sites import Site, residual_sites

pytestmark = pytest.mark.family
TEXT = "Mary gave a bottle of milk to"


class Folders(dict):
    """family → saved tiny model, each built the first time a test asks for it."""

    def __init__(self, root, tokenizer) -> None:
        super().__init__()
        self.root, self.tokenizer = root, tokenizer

    def __missing__(self, family: str):
        self[family] = build_tiny_model(family, self.root / family, tokenizer=self.tokenizer)
        return self[family]


@pytest.fixture(scope="session")
def extra_folders(tmp_path_factory, tiny_tokenizer):
    return Folders(tmp_path_factory.mktemp("more-families"), tiny_tokenizer)


@pytest.fixture(params=lane_families(EXTRA_FAMILIES))
def extra_model(request, extra_folders):
    return load_model(str(extra_folders[request.param]))


def _ids(model) -> torch.Tensor:
    return torch.tensor([model.tokenizer(TEXT)["input_ids"]])


def test_more_lens_reproduces_model_at_every_position(extra_model, record_property):
    gap = check_lens(extra_model.model, extra_model.architecture, _ids(extra_model))
    record_property("hf_class", type(extra_model.model).__name__)
    record_property("max_abs_dp", gap)
    assert gap <= lens_tolerance(extra_model.dtype)


def test_more_sites_add_up_or_say_why_not(extra_model, record_property):
    arch, n = extra_model.architecture, extra_model.n_layers
    if arch.parts is None:
        record_property("sites", f"residual stream only: {arch.parts_note or 'parts not found'}")
        with pytest.raises(ArchitectureError, match="only the residual stream can be read"):
            extra_model.backend.run(_ids(extra_model), sites=[Site(0, "attn_out")])
        return
    record_property("sites", "all")
    kinds = ("resid_pre", "attn_out", "mlp_out", "resid_post", "z")
    run = extra_model.backend.run(_ids(extra_model), sites=[Site(l, k) for l in range(n) for k in kinds])
    for layer in range(n):
        a = {k: run.activations[Site(layer, k)] for k in kinds}
        torch.testing.assert_close(
            a["resid_post"] - a["resid_pre"], a["attn_out"] + a["mlp_out"], rtol=0, atol=1e-4
        )
        assert a["z"].shape[2] == arch.n_heads


def test_more_nnsight_backend_reads_the_same_residuals(extra_model, extra_folders):
    twin = load_model(str(extra_folders[extra_model.architecture.family]), backend="nnsight")
    sites = residual_sites(extra_model.n_layers)
    steer = [Intervention(Site(1, "resid_pre"), "add", torch.ones(extra_model.d_model), positions=(1,))]
    a = extra_model.backend.run(_ids(extra_model), sites=sites, interventions=steer)
    b = twin.backend.run(_ids(extra_model), sites=sites, interventions=steer)
    torch.testing.assert_close(b.logits, a.logits, rtol=0, atol=1e-6)
    for site in sites:
        torch.testing.assert_close(b.activations[site], a.activations[site], rtol=0, atol=1e-6)


@pytest.mark.parametrize(("family", "scale"), [("cohere", 0.0625), ("cohere2", 0.5), ("granite", 0.25)])
def test_output_scale_is_read_and_without_it_the_lens_would_be_wrong(extra_folders, family, scale):
    """Cohere multiplies its logits by logit_scale, Granite divides them by logits_scaling."""
    model = load_model(str(extra_folders[family]))
    assert model.architecture.logit_scale == pytest.approx(scale)
    unscaled = dataclasses.replace(model.architecture, logit_scale=None)
    with pytest.raises(ArchitectureError, match=f"'{family}'.*does not reproduce"):
        check_lens(model.model, unscaled, _ids(model))


def test_granite_branch_multiplier_keeps_the_residual_and_says_why_not_the_branches(extra_folders):
    model = load_model(str(extra_folders["granite"]))
    assert model.architecture.parts is None
    assert "residual_multiplier=0.5" in model.architecture.parts_note
