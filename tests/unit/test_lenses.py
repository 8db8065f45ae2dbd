"""Tuned and Jacobian lenses (lib.analyses.common.lenses, lib.analyses.lens_training) on every tiny family:
the identity transforms are the logit lens exactly, every lens at the last residual is the model's
own distribution, files of another model are refused, and the Jacobian fit equals a direct
autograd Jacobian of the last block's output."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from lib.analyses.common.lens import cell_detail, lens_column, lens_grid
from lib.analyses.common.lenses import (
    Lens,
    lens_for,
    logit_lens,
    read_jacobian,
    read_tuned,
    save_jacobian,
    save_tuned,
)
from lib.analyses.lens_training import (
    LensConfig,
    capture_residuals,
    convergence,
    faithfulness,
    fit_jacobian,
    jacobian_matrices,
    prompt_jacobians,
    train_tuned,
)
from lib.core.capture import capture
from lib.core.errors import LensError, SettingsError

TEXT = "Claire and Mary went to the shops, then Mary gave a bottle of milk to"


def identity_tuned(loaded, folder) -> Lens:
    d, n = loaded.d_model, loaded.n_layers
    save_tuned(folder, {i: torch.zeros(d, d) for i in range(n)}, {i: torch.zeros(d) for i in range(n)},
               loaded=loaded)
    return read_tuned(folder, loaded)


def identity_jacobian(loaded, path) -> Lens:
    save_jacobian(path, {r: torch.eye(loaded.d_model) for r in range(1, loaded.n_layers)}, n_prompts=3,
                  loaded=loaded)
    return read_jacobian(path, loaded)


def random_lenses(loaded, tmp_path) -> list[Lens]:
    g = torch.Generator().manual_seed(0)
    d, n = loaded.d_model, loaded.n_layers
    save_tuned(tmp_path / "tuned", {i: 0.1 * torch.randn(d, d, generator=g) for i in range(n)},
               {i: torch.randn(d, generator=g) for i in range(n)}, loaded=loaded)
    save_jacobian(tmp_path / "j.pt", {r: torch.randn(d, d, generator=g) / d**0.5 for r in range(1, n)},
                  n_prompts=5, loaded=loaded)
    return [read_tuned(tmp_path / "tuned", loaded), read_jacobian(tmp_path / "j.pt", loaded)]


def grid_numbers(grid):
    return [[(c.entropy_bits, [(t.id, t.prob) for t in c.top]) for c in row] for row in grid.cells]


def test_identity_translator_and_identity_jacobian_are_the_logit_lens_exactly(family_model, tmp_path):
    cap = capture(family_model, TEXT)
    positions = tuple(range(cap.n_tokens))
    plain = grid_numbers(lens_grid(family_model, cap, positions, k=5))
    model = family_model
    for lens in (identity_tuned(model, tmp_path / "t"), identity_jacobian(model, tmp_path / "j")):
        assert lens.transformed  # it does hold matrices, and they change nothing
        assert grid_numbers(lens_grid(family_model, cap, positions, k=5, lens=lens)) == plain
        detail = cell_detail(family_model, cap, 1, 2, 5, lens=lens)
        assert detail == cell_detail(family_model, cap, 1, 2, 5)


def test_every_lens_at_the_last_residual_is_the_models_own_distribution(family_model, tmp_path):
    cap = capture(family_model, TEXT)
    own = torch.softmax(cap.final_logits.float(), -1).topk(5)
    for lens in [logit_lens(family_model), *random_lenses(family_model, tmp_path)]:
        column = lens_column(family_model, cap.residual, -1, 5, lens)
        assert [t.id for t in column[-1].top] == own.indices.tolist()
        probs = torch.tensor([t.prob for t in column[-1].top])
        torch.testing.assert_close(probs, own.values, atol=1e-4, rtol=1e-3)


def test_a_lens_changes_the_layers_it_holds_matrices_for(family_model, tmp_path):
    cap = capture(family_model, TEXT)
    tuned, jacobian = random_lenses(family_model, tmp_path)
    plain = lens_column(family_model, cap.residual, -1, 5)
    for lens in (tuned, jacobian):
        read = lens_column(family_model, cap.residual, -1, 5, lens)
        changed = [layer for layer in range(len(plain)) if read[layer].top != plain[layer].top]
        assert changed and set(changed) <= set(lens.transformed)
    assert jacobian.transformed == tuple(range(1, family_model.n_layers))  # file layer ℓ = residual ℓ + 1
    assert tuned.transformed == tuple(range(family_model.n_layers))


def test_jacobian_file_is_read_as_the_field_writes_it(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    d = loaded.d_model
    matrix = torch.randn(d, d)
    payload = {"J": {0: matrix.half(), 1: (2 * matrix).half()}, "n_prompts": 7, "source_layers": [0, 1],
               "d_model": d}  # TransformerLens 4's JacobianLens.save without metadata
    torch.save(payload, tmp_path / "lens.pt")
    lens = read_jacobian(tmp_path / "lens.pt", loaded)
    assert lens.transformed == (1, 2) and lens.provenance == "Jacobian lens, fitted on 7 prompts"
    h = torch.randn(4, d)
    torch.testing.assert_close(lens.transform_layer(h, 2), h @ (2 * matrix).half().float().T)
    assert torch.equal(lens.transform_layer(h, 0), h) and torch.equal(lens.transform_layer(h, 3), h)


@pytest.mark.parametrize("kind", ["jacobian", "tuned"])
def test_a_lens_of_another_model_is_refused_in_one_sentence(tiny_models, partner_folders, tmp_path, kind):
    from lib.core.models import load_model

    llama, gpt2 = tiny_models["llama"], tiny_models["gpt2"]
    other = load_model(str(partner_folders["llama-seed1"]))  # same width and depth, other weights
    shallow = load_model(str(partner_folders["gpt2-shallow"]))
    write = identity_jacobian if kind == "jacobian" else identity_tuned
    path = tmp_path / ("j.pt" if kind == "jacobian" else "t")
    write(llama, path)
    read = read_jacobian if kind == "jacobian" else read_tuned
    with pytest.raises(LensError, match="unembedding differs") as caught:
        read(path, other)
    assert "\n" not in str(caught.value)
    write(gpt2, path)
    with pytest.raises(LensError, match="3 layers; .* has 2"):
        read(path, shallow)
    d_path = tmp_path / "narrow"
    if kind == "jacobian":
        torch.save({"J": {0: torch.eye(8)}, "n_prompts": 1, "source_layers": [0], "d_model": 8}, d_path)
    else:
        d_path.mkdir()
        (d_path / "config.json").write_text(json.dumps({"d_model": 8, "num_hidden_layers": 3}))
    with pytest.raises(LensError, match="8 wide"):
        read(d_path, llama)


def test_files_that_are_not_lenses_or_need_code_are_refused(tiny_models, tmp_path):
    loaded = tiny_models["gpt2"]
    with pytest.raises(LensError, match="no Jacobian lens file|There is no"):
        read_jacobian(tmp_path / "missing.pt", loaded)
    torch.save({"weights": torch.eye(2)}, tmp_path / "other.pt")
    with pytest.raises(LensError, match="no 'J'"):
        read_jacobian(tmp_path / "other.pt", loaded)
    # a function inside: torch.load would have to unpickle code
    torch.save({"J": {0: torch.eye(64)}, "d_model": 64, "x": replace}, tmp_path / "code.pt")
    with pytest.raises(LensError, match="not a Jacobian lens file twinlens can read"):
        read_jacobian(tmp_path / "code.pt", loaded)
    with pytest.raises(LensError, match="no config.json"):
        read_tuned(tmp_path, loaded)


def test_a_model_without_a_shipped_lens_says_so(tiny_models):
    loaded = tiny_models["gpt2"]
    assert lens_for(loaded, "logit").is_identity
    for kind in ("tuned", "jacobian"):
        name = "tuned" if kind == "tuned" else "Jacobian"
        with pytest.raises(LensError, match=f"twinlens has no {name} lens for"):
            lens_for(loaded, kind)
    with pytest.raises(LensError, match="Unknown lens 'x'"):
        lens_for(loaded, "x")


# ---------------------------------------------------------------------------------------------
# the fit


def direct_jacobian(loaded, ids, residual, skip):
    """(1/|V|) Σ_{t∈V} Σ_{t'∈V} ∂h_L,t'/∂h_ℓ,t by torch.autograd.functional.jacobian of the map
    residual ℓ → residual L, every output dimension at once (hooks here only: this is the test)."""
    blocks = loaded.architecture.blocks
    with torch.no_grad():
        start = capture_ids(loaded, ids)[residual].clone()  # a normal tensor, not an inference one
    seen = {}

    def run(x):
        def replace_input(module, args, kwargs):
            if args:
                return (x, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": x}

        def keep_output(module, args, output):
            seen["out"] = output[0] if isinstance(output, tuple) else output

        handles = [blocks[residual].register_forward_pre_hook(replace_input, with_kwargs=True),
                   blocks[-1].register_forward_hook(keep_output)]
        try:
            loaded.model(input_ids=ids, use_cache=False)
        finally:
            for h in handles:
                h.remove()
        return seen["out"]

    full = torch.autograd.functional.jacobian(run, start)[0, :, :, 0]  # [pos, d, pos, d]
    valid = torch.arange(skip, ids.shape[1] - 1)
    return full[valid][:, :, valid].sum(0).mean(1)  # Σ over t', mean over t → [d_out, d_in]


def capture_ids(loaded, ids):
    from lib.core.sites import residual_sites

    sites = residual_sites(loaded.n_layers)
    run = loaded.backend.run(ids, sites=sites)
    return [run.activations[s] for s in sites]


def test_jacobian_fit_equals_a_direct_autograd_jacobian(family_model):
    ids = torch.tensor([family_model.tokenizer(TEXT, add_special_tokens=False)["input_ids"][:12]])
    fitted = prompt_jacobians(family_model, ids, skip=3, batch=24)  # 64 dims: three passes, the last short
    assert sorted(fitted) == list(range(1, family_model.n_layers))
    for residual, matrix in fitted.items():
        expected = direct_jacobian(family_model, ids, residual, skip=3).float()
        assert torch.linalg.norm(matrix - expected) / torch.linalg.norm(expected) < 1e-4


def test_jacobian_fit_resumes_where_it_stopped_and_averages_prompts(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    windows = torch.randint(3, loaded.vocab_size, (5, 10), generator=torch.Generator().manual_seed(1))
    cfg = LensConfig(context=10, prompts=2, skip=2, batch=32)
    fit_jacobian(loaded, windows, tmp_path / "w", cfg, log=lambda _: None)
    resumed = fit_jacobian(loaded, windows, tmp_path / "w", replace(cfg, prompts=4), log=lambda _: None)
    assert resumed["n_done"] == 4 and resumed["tokens"] == 40
    each = [prompt_jacobians(loaded, windows[i][None], skip=2, batch=32) for i in range(4)]
    for r, matrix in jacobian_matrices(resumed).items():
        torch.testing.assert_close(matrix, sum(e[r] for e in each) / 4, atol=1e-5, rtol=1e-4)
    with pytest.raises(SettingsError, match="was started with"):
        fit_jacobian(loaded, windows, tmp_path / "w", replace(cfg, prompts=5, skip=3), log=lambda _: None)
    fresh = fit_jacobian(loaded, windows, tmp_path / "fresh", replace(cfg, prompts=4), log=lambda _: None)
    assert set(convergence(fresh)) == set(range(1, loaded.n_layers))
    with pytest.raises(SettingsError, match="no position after the first 16"):
        prompt_jacobians(loaded, windows[:1], skip=16)


def test_tuned_lens_training_brings_every_layer_closer_to_the_final_distribution(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    windows = torch.randint(3, loaded.vocab_size, (8, 12), generator=torch.Generator().manual_seed(2))
    residuals = capture_residuals(loaded, windows)
    assert residuals.shape == (8 * 11, loaded.n_layers + 1, loaded.d_model)
    cfg = LensConfig(tuned_steps=40, tuned_batch=44, lr=1e-2)
    state = train_tuned(loaded, residuals, tmp_path / "w", cfg, log=lambda _: None)
    d, n = loaded.d_model, loaded.n_layers
    save_tuned(tmp_path / "t", dict(enumerate(state["A"])), dict(enumerate(state["b"])), loaded=loaded)
    tuned = read_tuned(tmp_path / "t", loaded)
    plain, trained = faithfulness(loaded, windows, [logit_lens(loaded), tuned])
    assert all(t < p for t, p in zip(trained.kl_bits[:n], plain.kl_bits[:n], strict=True))
    assert trained.kl_bits[n] == pytest.approx(plain.kl_bits[n], abs=1e-3) and plain.kl_bits[n] < 1e-3
    assert plain.top1_agreement[n] == 1.0 and state["A"].shape == (n, d, d)


def test_faithfulness_at_some_residuals_is_those_of_the_whole(family_model):
    """`faithfulness(residuals=…)` gives, in the order asked, the figures the whole run gives there."""
    loaded = family_model
    windows = torch.randint(3, loaded.vocab_size, (3, 9), generator=torch.Generator().manual_seed(4))
    n = loaded.n_layers
    picked = (n, 0, n // 2)
    (whole,), (some,) = (faithfulness(loaded, windows, [logit_lens(loaded)], residuals=r)
                         for r in (None, picked))
    assert len(whole.kl_bits) == n + 1 and len(some.kl_bits) == 3 and some.positions == whole.positions
    assert list(some.kl_bits) == [whole.kl_bits[r] for r in picked]
    assert list(some.top1_agreement) == [whole.top1_agreement[r] for r in picked]


def test_lens_fit_command_writes_both_lenses_and_a_card_that_measures_them(tiny_folders, tiny_models,
                                                                           tmp_path, capsys):
    from tiny import CORPUS

    from lib.app.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(sentence * 3 for sentence in CORPUS * 3))
    common = ["--model", str(tiny_folders["gpt2"]), "--corpus", str(corpus), "--work", str(tmp_path / "w"),
              "--out", str(tmp_path / "out"), "--context", "12", "--heldout", "2"]
    assert main(["lens", "fit", "--kind", "tuned", "--steps", "3", "--tokens", "60", "--tuned-batch", "8",
                 *common]) == 0
    assert main(["lens", "fit", "--kind", "jacobian", "--prompts", "2", "--skip", "2", "--batch", "64",
                 *common]) == 0
    card = json.loads((tmp_path / "out" / "card.json").read_text())
    assert card["tuned"]["steps"] == 3 and card["tuned"]["complete"]
    assert card["jacobian"]["prompts"] == 2 and card["jacobian"]["tokens"] == 24
    assert set(card["faithfulness"]) == {"logit", "tuned", "jacobian"}
    loaded = tiny_models["gpt2"]
    held = torch.tensor(card["heldout"]["token_ids"])
    assert held.shape == (2, 12)
    out = tmp_path / "out"
    lenses = [read_tuned(out / "tuned", loaded), read_jacobian(out / "jacobian.pt", loaded)]
    for found in faithfulness(loaded, held, lenses):
        assert list(found.kl_bits) == pytest.approx(card["faithfulness"][found.kind]["kl_bits"], abs=2e-3)
    assert lenses[1].n_prompts == 2 and lenses[0].provenance == "Tuned lens, trained on 24 tokens"
    assert main(["lens", "fit", "--kind", "jacobian", "--context", "3", *common[:-4]]) == 1
    assert "--context must be longer" in capsys.readouterr().err


def test_convergence_compares_the_half_it_kept_with_all_after_a_longer_resumed_fit(tiny_models, tmp_path):
    """A fit asked for 4 prompts keeps the mean of its first 2; resumed to 6 prompts, the card's
    convergence compares those 2 with all 6."""
    loaded = tiny_models["llama"]
    windows = torch.randint(3, loaded.vocab_size, (6, 10), generator=torch.Generator().manual_seed(3))
    cfg = LensConfig(context=10, prompts=4, skip=2, batch=32)
    fit_jacobian(loaded, windows, tmp_path / "w", cfg, log=lambda _: None)
    state = fit_jacobian(loaded, windows, tmp_path / "w", replace(cfg, prompts=6), log=lambda _: None)
    each = [prompt_jacobians(loaded, windows[i][None], skip=2, batch=32) for i in range(6)]
    for r, cosine in convergence(state).items():
        half, full = sum(e[r] for e in each[:2]) / 2, sum(e[r] for e in each) / 6
        expected = torch.nn.functional.cosine_similarity(half.flatten(), full.flatten(), dim=0)
        assert cosine == pytest.approx(float(expected), abs=1e-5)
    stopped_at_half = fit_jacobian(loaded, windows, tmp_path / "half", cfg, log=lambda _: None)
    stopped_at_half = {**stopped_at_half, "n_done": 2, "sum": stopped_at_half["half_sum"]}
    assert convergence(stopped_at_half) is None  # its half is all it has: no figure, not a cosine of 1
