"""The SAE training job (lib.analyses.sae_training) on every tiny family: what it collects is the
model's residual, the exported SAE (in the model's units) reconstructs like the trained one, and an
interrupted job resumes instead of starting again."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from tiny import CORPUS

from lib.analyses.common.corpus import clean_wikitext
from lib.analyses.common.sae import feature_book, load_sae, read_card
from lib.analyses.sae_training import (
    TrainConfig,
    _load_checkpoint,
    bar,
    load_shards,
    run_job,
    sparse_decode,
    topk_encode,
)
from lib.core.errors import SettingsError
from lib.core.sites import Site

CFG = TrainConfig(
    residuals=(1, 2), d_sae=16, k=4, k_aux=4, dead_after=64, context=16, train_tokens=150, heldout_windows=2,
    windows_per_shard=4, batch_windows=2, batch_size=32, train_minutes=0.01, max_epochs=2, n_contexts=2,
    n_logit_tokens=3,
)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n\n".join(sentence * 3 for sentence in CORPUS * 2))
    return path


def test_job_collects_trains_exports_and_resumes(family_model, tmp_path, corpus):
    loaded = family_model
    work, out = tmp_path / "work", tmp_path / "out"
    said: list[str] = []
    cards = run_job(loaded, work, out, CFG, corpus=corpus, log=said.append)
    assert [c["residual"] for c in cards] == [1, 2]
    shards = [line for line in said if line.startswith("collect train:")]
    assert shards and shards[-1].startswith("collect train: [████████████████████] 100%  shard")

    # collection: one pass per batch stopped after the highest residual, position 0 dropped
    acts, ids = load_shards(work / "acts", "train", 2)
    sites = [Site.residual_at(r, loaded.n_layers) for r in CFG.residuals]
    full = loaded.backend.run(ids[:2].long(), sites=sites)
    expected = full.activations[sites[1]][:, 1:].reshape(-1, loaded.d_model)
    torch.testing.assert_close(acts[: len(expected)].float(), expected.half().float())

    # export: the folded SAE in model units reconstructs as the trained one does in scaled units
    layers, progress = _load_checkpoint(work / "train-checkpoint.pt", CFG)
    state = layers[1]
    sae = load_sae(out / sites[1].name)
    assert (sae.architecture, sae.k, sae.d_sae, sae.residual) == ("topk", 4, 16, 2)
    x = acts[:20].float()
    p = {k: v.detach() for k, v in state.params.items()}
    _, values, indices = topk_encode(p, x * state.scale, CFG.k)
    trained = (sparse_decode(p["W_dec"], values, indices) + p["b_dec"]) / state.scale
    fp16 = 2e-2 * trained.abs().max().item()  # the shipped weights are fp16
    torch.testing.assert_close(sae.decode(sae.encode(x)), trained, atol=fp16, rtol=2e-2)
    torch.testing.assert_close(sae.W_dec.norm(dim=-1), torch.ones(16), atol=1e-2, rtol=0)

    card = read_card(out / sites[1].name)
    assert card["tokens_seen"] == progress["tokens"] > 0 and 0 <= card["dead_share"] <= 1
    assert card["l0"] <= CFG.k and card["fvu_heldout"] >= 0
    book = feature_book(str(out / sites[1].name))
    assert book.n_features == 16 and 0 <= book.density(0) <= 1
    active = next(i for i in range(16) if book.card(i).contexts)
    context = book.card(active).contexts[0]
    assert context.activation > 0 and 0 <= context.peak < len(context.tokens)

    # resume: finished shards are kept, training continues from its checkpoint
    stamps = {p: p.stat().st_mtime_ns for p in (work / "acts").glob("*.pt")}
    longer = replace(CFG, train_minutes=0.02, max_epochs=4)
    run_job(loaded, work, out, longer, corpus=corpus, log=lambda m: None)
    assert {p: p.stat().st_mtime_ns for p in (work / "acts").glob("*.pt")} == stamps
    _, resumed = _load_checkpoint(work / "train-checkpoint.pt", longer)
    assert resumed["step"] > progress["step"]

    # going on with one layer only: the other layer's exported SAE is left as it was
    first = {p.name: p.read_bytes() for p in (out / sites[0].name).iterdir()}
    one = replace(longer, residuals=(2,), train_minutes=0.03, max_epochs=6)
    [card] = run_job(loaded, work, out, one, corpus=corpus, log=lambda m: None)
    assert card["residual"] == 2 and card["tokens_seen"] > resumed["tokens"]
    assert {p.name: p.read_bytes() for p in (out / sites[0].name).iterdir()} == first
    # each training run is on the card with its own steps and speed; the latest speed is the card's
    runs = card["training_runs"]
    _, last = _load_checkpoint(work / "train-checkpoint.pt", one)
    assert [r["residuals"] for r in runs] == [[1, 2], [1, 2], [2]]
    assert sum(r["steps"] for r in runs) == last["step"] and runs[0]["steps"] == progress["step"]
    assert sum(r["tokens_per_layer"] for r in runs) == last["tokens"] == card["tokens_seen"]
    assert card["train_tokens_per_s_per_layer"] == runs[-1]["tokens_per_s_per_layer"] > 0
    assert "train_runs" not in card["collection"]
    with pytest.raises(SettingsError, match="holds residuals"):
        _load_checkpoint(work / "train-checkpoint.pt", replace(CFG, residuals=(1, 2)))


def test_wikitext_becomes_prose():
    text = (
        "{{Infobox country|name=France}}'''France''' is a [[country]] in [[Western Europe|western Europe]] "
        "with a long history<ref>{{cite web|url=x}}</ref>.[[File:Flag.svg|thumb|The [[flag]]]]"
        "\n== History ==\n"
        "{| class=wikitable\n|-\n| a || b\n|}\n* Its capital is [[Paris]].[[Category:Countries]]"
    )
    assert clean_wikitext(text) == (
        "France is a country in western Europe with a long history.\nHistory\nIts capital is Paris."
    )


def test_progress_bar():
    assert bar(0.3) == "[██████░░░░░░░░░░░░░░]  30%"
    assert bar(0) == "[░░░░░░░░░░░░░░░░░░░░]   0%" and bar(1.2) == "[████████████████████] 120%"


def test_card_is_json(tmp_path):
    assert read_card(tmp_path) is None
    (tmp_path / "card.json").write_text(json.dumps({"l0": 32}))
    assert read_card(tmp_path) == {"l0": 32}
