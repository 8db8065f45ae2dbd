"""One prompt through two models: the same Comparison shape, A/B read as model 1/model 2."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
from tokenizers import processors

from lib.analyses.compare import compare_prompts
from lib.analyses.model_compare import compare_models
from lib.core.errors import ModelPairError
from lib.core.hooks import HooksBackend
from lib.core.models import load_model

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def others(partner_folders):
    return {name: load_model(str(folder)) for name, folder in partner_folders.items()}


def test_model_against_itself_has_zero_distance_and_identical_lens(tiny_models):
    model = tiny_models["llama"]
    c = compare_models(model, model, PROMPT, top_k=5)
    assert c.mode == "models" and c.model == c.model2 == model.info()
    assert max(c.distance.cosine) == 0.0 and max(c.distance.relative_l2) == 0.0
    assert c.a.lens == c.b.lens and c.a.final == c.b.final
    assert len(c.distance.cosine) == model.n_layers + 1


def test_same_config_other_weights_differ_at_every_layer(tiny_models, others):
    model1, model2 = tiny_models["llama"], others["llama-seed1"]
    c = compare_models(model1, model2, PROMPT, top_k=5)
    assert min(c.distance.cosine) > 0 and min(c.distance.relative_l2) > 0
    assert c.model["spec"] == model1.spec and c.model2["spec"] == model2.spec
    # side a is model 1, side b model 2: each equals that model's own single-model lens
    assert c.a.lens == compare_prompts(model1, PROMPT, PROMPT, top_k=5).a.lens
    assert c.b.lens == compare_prompts(model2, PROMPT, PROMPT, top_k=5).a.lens
    assert c.a.final != c.b.final


def test_models_of_different_shapes_have_no_distances_and_say_why(tiny_models, others):
    c = compare_models(tiny_models["gpt2"], others["gpt2-shallow"], PROMPT)
    assert c.distance is None
    assert "3 layers of width 64" in c.note and "2 layers of width 64" in c.note
    assert (len(c.a.lens), len(c.b.lens)) == (4, 3)
    assert json.loads(json.dumps(c.to_dict()))["distance"] is None


def test_models_with_different_tokenizers_are_refused_before_running(tiny_models, others):
    model1, model2 = tiny_models["gpt2"], others["gpt2-other-tokenizer"]
    passes = (model1.forward_passes, model2.forward_passes)
    with pytest.raises(ModelPairError, match="do not share a tokenizer"):
        compare_models(model1, model2, PROMPT)
    assert (model1.forward_passes, model2.forward_passes) == passes


def test_tokenizers_adding_bos_differently_are_refused_unless_bos_is_set(tiny_models):
    model = tiny_models["llama"]
    tokenizer = copy.deepcopy(model.tokenizer)
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", tokenizer.bos_token_id)]
    )
    adds_bos = dataclasses.replace(model, tokenizer=tokenizer)
    adds_bos.backend = HooksBackend(adds_bos)  # a copy gets its own backend (lib.core.models sets it at load)
    with pytest.raises(ModelPairError, match="split the prompt differently.*BOS"):
        compare_models(model, adds_bos, PROMPT, bos="auto")
    c = compare_models(model, adds_bos, PROMPT, bos="on")
    assert c.a.token_ids == c.b.token_ids and c.a.token_ids[0] == tokenizer.bos_token_id


def test_cli_compare_models_prints_the_comparison_json(tiny_folders, partner_folders, run_cli):
    out = run_cli(
        "compare-models", PROMPT, "--model", str(tiny_folders["llama"]),
        "--model2", str(partner_folders["llama-seed1"]), "--top-k", "3",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert set(data) >= {"model", "model2", "settings", "a", "b", "distance", "mode", "note"}
    assert data["mode"] == "models" and data["settings"] == {"top_k": 3, "bos": "auto"}
    assert data["model"]["spec"] == str(tiny_folders["llama"])
    assert data["model2"]["spec"] == str(partner_folders["llama-seed1"])
    assert data["a"]["text"] == data["b"]["text"] == PROMPT
    assert len(data["distance"]["cosine"]) == len(data["a"]["lens"]) == 4


def test_cli_compare_models_with_another_tokenizer_exits_1_with_one_line(
    tiny_folders, partner_folders, run_cli
):
    out = run_cli(
        "compare-models", PROMPT, "--model", str(tiny_folders["gpt2"]),
        "--model2", str(partner_folders["gpt2-other-tokenizer"]),
    )
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("error: ") and "do not share a tokenizer" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
