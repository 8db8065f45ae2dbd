"""Every model family twinlens claims: the parts it finds are the ones the model really uses.

Each test taking `family_model` runs on a tiny random model of every family in tests/tiny.py;
`make matrix` turns their results (and the values recorded with `record_property`) into
docs/support_matrix.md.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
from tiny import UNSUPPORTED, build_tiny_model

from lib.core.architecture import check_lens, lens_tolerance
from lib.core.capture import capture
from lib.core.errors import ArchitectureError
from lib.core.models import load_model


def _ids(loaded, text: str) -> torch.Tensor:
    return torch.tensor([loaded.tokenizer(text)["input_ids"]])


def test_lens_reproduces_model_at_every_position(family_model, record_property):
    ids = _ids(family_model, "Mary gave a bottle of milk to")
    gap = check_lens(family_model.model, family_model.architecture, ids)
    record_property("hf_class", type(family_model.model).__name__)
    record_property("max_abs_dp", gap)
    assert gap <= lens_tolerance(family_model.dtype)


def test_residual_below_last_layer_is_what_transformers_calls_hidden_states(family_model):
    """Layer ℓ < L is the input of block ℓ+1: HF's hidden_states[ℓ] (its last entry is after the
    final norm, so it is left out). This pins layer 0 after any embedding scale or projection.
    The reference runs on a copy: output_hidden_states leaves transformers' own hooks behind."""
    text = "Claire and Mary went to the shops"
    cap = capture(family_model, text)
    with torch.inference_mode():
        reference = copy.deepcopy(family_model.model)
        hf = reference(input_ids=_ids(family_model, text), output_hidden_states=True)
    below_last = torch.stack(hf.hidden_states[: family_model.n_layers])[:, 0]
    torch.testing.assert_close(cap.residual[:-1], below_last, rtol=0, atol=1e-6)


@pytest.mark.parametrize("family", ["gemma", "gemma2"])
def test_gemma_layer_zero_is_the_embedding_scaled_by_root_width(tiny_models, family):
    model = tiny_models[family]
    cap = capture(model, "The capital of Italy is")
    embedded = model.model.get_input_embeddings().weight[list(cap.token_ids)]  # the table, unscaled
    scale = torch.tensor(math.sqrt(model.d_model), dtype=embedded.dtype)
    torch.testing.assert_close(cap.residual[0], embedded * scale, rtol=0, atol=1e-6)


def test_gemma2_lens_without_its_softcap_would_not_match_the_model(tiny_models):
    model = tiny_models["gemma2"]
    assert model.architecture.logit_softcap == model.model.config.final_logit_softcapping
    uncapped = dataclasses.replace(model.architecture, logit_softcap=None)
    with pytest.raises(ArchitectureError, match="'gemma2'.*does not reproduce"):
        check_lens(model.model, uncapped, _ids(model, "The capital of France is"))


def test_opt_lens_projects_the_residual_down_to_the_word_embedding_width(tiny_models):
    model = tiny_models["opt"]
    project_out = model.architecture.project_out
    assert project_out is not None
    assert (project_out.in_features, project_out.out_features) == (64, 32)
    assert model.d_model == 64 and model.architecture.unembed.in_features == 32


def test_opt_without_final_norm_normalizes_inside_its_blocks(tiny_tokenizer, tmp_path):
    """OPT-350m style: norms after each block and no final norm, which is not an error."""
    import transformers as tf

    config = tf.OPTConfig(
        num_hidden_layers=3, hidden_size=64, ffn_dim=128, num_attention_heads=4, word_embed_proj_dim=32,
        max_position_embeddings=128, do_layer_norm_before=False, vocab_size=len(tiny_tokenizer),
    )
    model = tf.OPTForCausalLM(config).eval()
    model.save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path))
    assert loaded.architecture.final_norm is None and loaded.architecture.project_out is not None


@pytest.mark.family
@pytest.mark.parametrize(
    "family, reason",
    [("bert", "no list of transformer blocks"), ("lfm2", "no final norm found")],
    ids=list(UNSUPPORTED),
)
def test_unsupported_family_is_refused_at_load_naming_it(
    family, reason, tiny_tokenizer, tmp_path, record_property
):
    folder = build_tiny_model(family, tmp_path / family, tokenizer=tiny_tokenizer)
    with pytest.raises(ArchitectureError, match=f"'{family}'.*{reason}") as refused:
        load_model(str(folder))
    record_property("refusal", str(refused.value))


def test_lens_check_leaves_no_hook_behind(family_model):
    def hooks() -> list[int]:  # transformers keeps hooks of its own on some modules
        return [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in family_model.model.modules()]

    before = hooks()
    check_lens(family_model.model, family_model.architecture, _ids(family_model, "the lazy dog"))
    assert hooks() == before
