"""SAEs: the field's file formats, the published encode/decode formulas, features of two prompts.

Every test writes its own small SAEs (width = the tiny family's d_model) and checks the library
against the formulas computed here by hand, row by row.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib.analyses.common.sae import feature_book, load_sae, sae_for_layer, same_model, save_saelens
from lib.analyses.features import compare_features, trace_feature
from lib.core.capture import capture
from lib.core.errors import SettingsError
from lib.core.sites import Site

D_SAE = 24


def random_sae(d_in: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(d_in, D_SAE, generator=g) / d_in**0.5,
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, d_in, generator=g) / D_SAE**0.5,
        "b_dec": torch.randn(d_in, generator=g) * 0.1,
        "threshold": torch.rand(D_SAE, generator=g) * 0.2,
    }


def by_hand(
    arch: str, w: dict, x: torch.Tensor, k: int, apply_b_dec: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """f and x̂ of each row of x, computed one row and one feature at a time."""
    f = torch.zeros(len(x), D_SAE)
    for n, row in enumerate(x.double()):
        inp = row - w["b_dec"].double() if apply_b_dec else row
        pre = [float(inp @ w["W_enc"][:, i].double() + w["b_enc"][i]) for i in range(D_SAE)]
        if arch == "standard":
            act = [max(p, 0.0) for p in pre]
        elif arch == "jumprelu":
            act = [p if p > float(w["threshold"][i]) and p > 0 else 0.0 for i, p in enumerate(pre)]
        else:
            keep = sorted(range(D_SAE), key=lambda i: -pre[i])[:k]
            act = [max(pre[i], 0.0) if i in keep else 0.0 for i in range(D_SAE)]
        f[n] = torch.tensor(act)
    x_hat = f.double() @ w["W_dec"].double() + w["b_dec"].double()
    return f, x_hat.float()


@pytest.mark.parametrize("arch", ["standard", "jumprelu", "topk"])
def test_saelens_formats_follow_the_formulas(family_model, tmp_path, arch):
    loaded = family_model
    w = random_sae(loaded.d_model)
    save_saelens(
        tmp_path / arch, W_enc=w["W_enc"], b_enc=w["b_enc"], W_dec=w["W_dec"], b_dec=w["b_dec"],
        threshold=w["threshold"] if arch == "jumprelu" else None, architecture=arch,
        k=5 if arch == "topk" else None,
        hook_name="blocks.1.hook_resid_post", model_name=loaded.name, dtype="float32",
        apply_b_dec_to_input=arch != "jumprelu",
    )
    sae = load_sae(tmp_path / arch)
    assert (sae.architecture, sae.d_in, sae.d_sae) == (arch, loaded.d_model, D_SAE)
    assert sae.residual == 2  # blocks.1.hook_resid_post is residual 2
    sae.check_fits(loaded)
    cap = capture(loaded, "The capital of France is Paris.")
    x = cap.residual[sae.residual].float()
    f, x_hat = by_hand(arch, w, x, 5, arch != "jumprelu")
    torch.testing.assert_close(sae.encode(x), f, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sae.decode(sae.encode(x)), x_hat, atol=1e-4, rtol=1e-4)
    if arch == "topk":
        assert ((sae.encode(x) > 0).sum(-1) <= 5).all()
    fvu = sae.fvu(x)
    body = x[1:]
    expected = float((x_hat[1:] - body).pow(2).sum() / (body - body.mean(0)).pow(2).sum())
    assert fvu == pytest.approx(expected, rel=1e-4)


def test_gemma_scope_npz_is_jumprelu_on_resid_post(family_model, tmp_path):
    loaded = family_model
    w = random_sae(loaded.d_model, seed=3)
    folder = tmp_path / "gemma-scope-2b-pt-res" / "layer_1" / "width_16k" / "average_l0_5"
    folder.mkdir(parents=True)
    np.savez(folder / "params.npz", **{n: t.numpy() for n, t in w.items()})
    sae = load_sae(folder)
    assert sae.architecture == "jumprelu" and not sae.apply_b_dec_to_input
    assert sae.hook_name == "blocks.1.hook_resid_post" and sae.residual == 2
    assert sae.model_name == "gemma-2-2b"
    x = capture(loaded, "Claire and Mary went to the shops").residual[2].float()
    f, x_hat = by_hand("jumprelu", w, x, 0, apply_b_dec=False)
    torch.testing.assert_close(sae.encode(x), f, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sae.decode(f), x_hat, atol=1e-4, rtol=1e-4)
    with pytest.raises(SettingsError, match="trained on gemma-2-2b"):
        sae.check_fits(loaded)
    sae.check_fits(loaded, any_model=True)


def exact_sae(folder, d: int, hook: str, model: str):
    """An SAE that reconstructs every vector exactly: f = relu([x; −x]), W_dec = [I; −I]."""
    eye = torch.eye(d)
    return save_saelens(
        folder, W_enc=torch.cat([eye, -eye], 1), b_enc=torch.zeros(2 * d), W_dec=torch.cat([eye, -eye], 0),
        b_dec=torch.zeros(d), architecture="standard", hook_name=hook, model_name=model, dtype="float32",
    )


def test_features_of_two_prompts(family_model, tmp_path):
    """Invariants on every family: an exact SAE has FVU 0; shared / only-A / only-B partition the
    features active at the last position and are ranked by |Δ|; heatmap rows are f at each position."""
    loaded = family_model
    residual = loaded.n_layers - 1
    site = Site.residual_at(residual, loaded.n_layers)
    sae = load_sae(exact_sae(tmp_path / "exact", loaded.d_model, site.name, loaded.name))
    a = capture(loaded, "The capital of France is")
    b = capture(loaded, "The capital of Italy is")
    result = compare_features(sae, a, b, top=1000)
    assert result.fvu_a == pytest.approx(0, abs=1e-6) and result.fvu_b == pytest.approx(0, abs=1e-6)
    f_a, f_b = sae.encode(a.residual[residual]), sae.encode(b.residual[residual])
    on_a = set((f_a[-1] > 0).nonzero().flatten().tolist())
    on_b = set((f_b[-1] > 0).nonzero().flatten().tolist())
    assert {r.feature for r in result.shared} == on_a & on_b
    assert {r.feature for r in result.only_a} == on_a - on_b
    assert {r.feature for r in result.only_b} == on_b - on_a
    for group in (result.shared, result.only_a, result.only_b):
        deltas = [abs(r.delta) for r in group]
        assert deltas == sorted(deltas, reverse=True)
    assert [r.activation_a for r in result.top_a] == sorted(f_a[-1][f_a[-1] > 0].tolist(), reverse=True)
    for i, feature in enumerate(result.heat_features):
        assert result.heat_a[i] == pytest.approx(f_a[:, feature].tolist())
        assert result.heat_b[i] == pytest.approx(f_b[:, feature].tolist())
    rows = list(result.heat_features)  # the colour scale's top: the highest cell after position 0
    assert result.heat_bound == pytest.approx(max(f_a[1:, rows].max(), f_b[1:, rows].max()).item())
    data = result.to_dict()
    assert data["layer"] == residual and data["sae"]["hook_name"] == site.name
    assert set(data) == {"layer", "sae", "a", "b", "shared", "only_a", "only_b"}
    trace = trace_feature(sae, a, b, result.top_a[0].feature)
    assert trace.activations_a == pytest.approx(f_a[:, result.top_a[0].feature].tolist())
    assert len(trace.across_layers_a) == loaded.n_layers + 1
    # at the SAE's own layer the pre-activation is the feature's input, which relu makes its activation
    assert max(trace.across_layers_a[residual], 0) == pytest.approx(trace.activations_a[-1], abs=1e-5)


def test_stop_early_records_the_same_and_skips_later_blocks(family_model):
    loaded = family_model
    ids = torch.tensor([loaded.tokenizer("The capital of France is Paris")["input_ids"]])
    sites = [Site.residual_at(1, loaded.n_layers), Site.residual_at(2, loaded.n_layers)]
    full = loaded.backend.run(ids, sites=sites)
    before = loaded.forward_passes
    early = loaded.backend.run(ids, sites=sites, stop_early=True)
    assert loaded.forward_passes == before + 1
    assert early.logits.shape == (1, 0)
    for site in sites:
        torch.testing.assert_close(early.activations[site], full.activations[site])
    calls = []
    last = loaded.architecture.blocks[-1]
    handle = last.register_forward_hook(lambda *a: calls.append(1))  # test-only probe
    try:
        loaded.backend.run(ids, sites=sites[:1], stop_early=True)
    finally:
        handle.remove()
    assert calls == []  # the last block never ran


# --- bad SAEs: one plain sentence each --------------------------------------------------------


def write_ok(folder, d: int = 8, **cfg_changes):
    weights = {k: v for k, v in random_sae(d).items() if k != "threshold"}
    save_saelens(folder, **weights, architecture="standard", hook_name="blocks.0.hook_resid_pre",
                 model_name="m", dtype="float32")
    if cfg_changes:
        cfg = json.loads((folder / "cfg.json").read_text())
        cfg.update(cfg_changes)
        (folder / "cfg.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir() or p, "not an SAE folder"),
        (lambda p: p, "no such file or folder"),
        (lambda p: write_ok(p, architecture="gated"), "architecture 'gated'"),
        (lambda p: write_ok(p, normalize_activations="expected_average_only_in"), "normalized"),
        (lambda p: write_ok(p, d_in=9), "d_in = 9"),
        (lambda p: write_ok(p, architecture="topk"), "needs an integer k"),
        (lambda p: write_ok(p, hook_name="blocks.0.hook_mlp_out", metadata={}), "residual stream"),
        (lambda p: write_ok(p, hook_name="blocks.x.y", metadata={}), "blocks"),
    ],
)
def test_bad_sae_folders(tmp_path, make, message):
    folder = make(tmp_path / "sae")
    with pytest.raises(SettingsError, match=message):
        load_sae(folder)


def test_wrong_shapes_and_damaged_files(tmp_path):
    w = random_sae(8)
    save_saelens(
        tmp_path / "shape", W_enc=w["W_enc"], b_enc=w["b_enc"], W_dec=w["W_dec"].t().contiguous(),
        b_dec=w["b_dec"], architecture="standard", hook_name="blocks.0.hook_resid_pre", model_name="m",
    )
    with pytest.raises(SettingsError, match="wrong shape: W_dec"):
        load_sae(tmp_path / "shape")
    damaged = write_ok(tmp_path / "damaged")
    (damaged / "sae_weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(SettingsError, match="damaged or not a safetensors"):
        load_sae(damaged)
    (tmp_path / "npz").mkdir()
    (tmp_path / "npz" / "params.npz").write_bytes(b"PK\x03\x04 broken")
    with pytest.raises(SettingsError, match="damaged or not an .npz"):
        load_sae(tmp_path / "npz")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "cfg.json").write_text("{not json")
    with pytest.raises(SettingsError, match="not valid JSON"):
        load_sae(tmp_path / "cfg")


def test_sae_for_another_width_or_model_or_layer(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    sae = load_sae(write_ok(tmp_path / "narrow", d=loaded.d_model + 1))
    with pytest.raises(SettingsError, match=rf"width {loaded.d_model + 1}.*width {loaded.d_model}"):
        sae.check_fits(loaded)
    with pytest.raises(SettingsError, match="trained on m, not on"):
        load_sae(write_ok(tmp_path / "other", d=loaded.d_model)).check_fits(loaded)
    deep = write_ok(
        tmp_path / "deep", d=loaded.d_model, hook_name="blocks.40.hook_resid_post", metadata={},
        model_name=loaded.name,
    )
    with pytest.raises(SettingsError, match="only 3 blocks"):
        load_sae(deep).check_fits(loaded)
    with pytest.raises(SettingsError, match="ships no SAEs"):
        sae_for_layer(loaded, 1)
    with pytest.raises(SettingsError, match="not residual 2"):
        sae_for_layer(loaded, 2, str(write_ok(tmp_path / "ok", d=loaded.d_model, model_name=loaded.name)))


def test_model_names_match_loosely():
    assert same_model("HuggingFaceTB/SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct (Q4_1, embedded)")
    assert not same_model("gemma-2-2b", "SmolLM2-135M-Instruct (Q4_1, embedded)")


def test_feature_book_reads_precomputed_cards(tmp_path):
    folder = write_ok(tmp_path / "book")
    contexts = np.full((D_SAE, 2, 17), -1, dtype=np.int32)
    contexts[3, 0, 5:12] = [10, 11, 12, 13, 14, 15, 16]  # peak (index 8) is token 13
    np.savez_compressed(
        folder / "features.npz", density=np.linspace(0, 1, D_SAE, dtype=np.float32), contexts=contexts,
        context_acts=np.eye(D_SAE, 2, k=-3, dtype=np.float16) * 2,
        promoted_ids=np.full((D_SAE, 2), 20, dtype=np.int32), promoted_logits=np.ones((D_SAE, 2), np.float16),
        suppressed_ids=np.full((D_SAE, 2), 21, dtype=np.int32),
        suppressed_logits=-np.ones((D_SAE, 2), np.float16),
    )
    vocab = {str(i): f"t{i}" for i in range(10, 22)}
    (folder / "tokens.json").write_text(json.dumps(vocab))
    book = feature_book(str(folder))
    card = book.card(3)
    assert card.contexts[0].tokens == ("t10", "t11", "t12", "t13", "t14", "t15", "t16")
    assert card.contexts[0].tokens[card.contexts[0].peak] == "t13" and card.contexts[0].activation == 2
    assert card.promoted[0] == ("t20", 1.0) and card.suppressed[0] == ("t21", -1.0)
    assert card.label == "fires on t13 — '…t10t11t12t13t14t15…' (generic: fires on 13% of tokens)"
    assert book.density(3) == pytest.approx(3 / 23)
    with pytest.raises(SettingsError, match="no feature 99"):
        book.card(99)
    assert feature_book(str(tmp_path / "nothing")) is None


def test_hub_sae_while_offline_is_one_sentence():
    with pytest.raises(SettingsError, match="Could not fetch the SAE hf:google/gemma-scope-2b-pt-res"):
        load_sae("hf:google/gemma-scope-2b-pt-res/layer_12/width_16k/average_l0_82")
    with pytest.raises(SettingsError, match="not a hub SAE"):
        load_sae("hf:nothing")
