"""The lens choice threaded through a comparison, the CLI and the shareable request: a chosen lens
reads every layer of both prompts (the reduced and the captured paths alike), the settings and
caption say which, and a model without that lens is told so in one sentence."""

from __future__ import annotations

import json

import pytest
import torch

from lib.analyses.common import lenses
from lib.analyses.common.lens import lens_column, lens_grid, top1_disagreement
from lib.analyses.common.lenses import read_jacobian, save_jacobian
from lib.analyses.compare import compare_captures, compare_prompts
from lib.app.lens_choice import disagreement_rows, lens_caption
from lib.app.request import Request
from lib.core.capture import capture
from lib.core.errors import LensError, SettingsError

A, B = "The capital of France is Paris. The capital of", "The capital of Italy is Rome. The capital of"


@pytest.fixture
def shipped(tmp_path, monkeypatch):
    """A lenses folder that ships a random Jacobian lens for the tiny Llama (and nothing else)."""
    monkeypatch.setattr(lenses, "SHIPPED", tmp_path)

    def ship(loaded):
        folder = tmp_path / "tiny"
        g = torch.Generator().manual_seed(3)
        d = loaded.d_model
        save_jacobian(folder / lenses.JACOBIAN_FILE,
                      {r: torch.eye(d) + torch.randn(d, d, generator=g) for r in range(1, loaded.n_layers)},
                      n_prompts=12, loaded=loaded)
        (folder / lenses.CARD_FILE).write_text(json.dumps({"model": loaded.name}))
        return folder

    return ship


def ids(column):
    return [[t.id for t in top] for top in column]


def probs(column):
    return [t.prob for top in column for t in top]


def test_a_comparison_reads_both_prompts_with_the_chosen_lens(tiny_models, shipped):
    loaded = tiny_models["llama"]
    lens = read_jacobian(shipped(loaded) / lenses.JACOBIAN_FILE, loaded)
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    chosen = compare_captures(loaded, cap_a, cap_b, top_k=3, lens="jacobian")
    plain = compare_captures(loaded, cap_a, cap_b, top_k=3)
    assert plain.settings == {"top_k": 3, "bos": "auto"}  # comparisons without a lens read as before
    assert chosen.settings["lens"] == "jacobian"
    assert chosen.settings["lens_caption"] == "Jacobian lens, fitted on 12 prompts"
    for side, cap in ((chosen.a, cap_a), (chosen.b, cap_b)):  # the same cells, batched otherwise
        expected = [c.top for c in lens_column(loaded, cap.residual, -1, 3, lens)]
        assert ids(side.lens) == ids(expected)
        assert probs(side.lens) == pytest.approx(probs(expected), rel=1e-5)
    assert chosen.a.lens != plain.a.lens and chosen.a.lens[-1] == plain.a.lens[-1]
    reduced = compare_prompts(loaded, A, B, top_k=3, lens="jacobian")
    assert ids(reduced.a.lens) == ids(chosen.a.lens) and ids(reduced.b.lens) == ids(chosen.b.lens)
    assert reduced.settings == chosen.settings


def test_a_model_without_that_lens_is_told_so_in_one_sentence(tiny_models, shipped):
    shipped(tiny_models["llama"])
    gpt2 = tiny_models["gpt2"]
    for call in (lambda: compare_prompts(gpt2, A, B, lens="jacobian"),
                 lambda: compare_captures(gpt2, capture(gpt2, A), capture(gpt2, B), lens="tuned")):
        with pytest.raises(LensError) as caught:
            call()
        message = str(caught.value)
        assert message.startswith("twinlens has no ") and message.count(".") == 1 and "\n" not in message


def test_caption_and_disagreement_name_the_layers_the_lenses_differ_at(tiny_models, shipped):
    loaded = tiny_models["llama"]
    shipped(loaded)
    assert lens_caption(loaded, "jacobian") == (
        f"Read with: Jacobian lens, fitted on 12 prompts (residuals 1…{loaded.n_layers - 1}; "
        f"0, {loaded.n_layers} as by the logit lens)."
    )
    cap = capture(loaded, A)
    positions = tuple(range(cap.n_tokens))
    plain, jacobian = lens_grid(loaded, cap, positions, 3), lens_grid(loaded, cap, positions, 3, "jacobian")
    differ = top1_disagreement(plain, jacobian)
    assert differ[0] == () and differ[-1] == ()  # residuals 0 and L: both lenses are the logit lens there
    assert any(differ[1:-1])
    for layer, positions_there in enumerate(differ):
        for p in positions_there:
            assert plain.cells[layer][p].top[0].id != jacobian.cells[layer][p].top[0].id
    rows = disagreement_rows(plain, jacobian)
    assert [r["layer"] for r in rows] == list(range(loaded.n_layers, -1, -1))
    assert [r["differ"] for r in rows] == [len(d) for d in reversed(differ)]
    with pytest.raises(SettingsError):
        top1_disagreement(plain, lens_grid(loaded, cap, positions[:2], 3))


def test_the_link_carries_the_lens_only_when_it_is_not_the_logit_lens():
    assert "lens" not in Request().to_query()
    request = Request(lens="jacobian")
    assert request.to_query()["lens"] == "jacobian"
    assert Request.from_query(request.to_query()) == request
    with pytest.raises(SettingsError, match="lens='x' is not one of logit, tuned, jacobian"):
        Request.from_query({"a": "x", "lens": "x"})


def test_cli_compare_reads_with_a_lens_file_and_refuses_a_missing_lens(tiny_folders, tiny_models, tmp_path,
                                                                        capsys):
    from lib.app.cli import main

    folder = str(tiny_folders["llama"])
    loaded = tiny_models["llama"]
    save_jacobian(tmp_path / "j.pt", {r: 2 * torch.eye(loaded.d_model) for r in range(1, loaded.n_layers)},
                  n_prompts=4, loaded=loaded)
    assert main(["compare", A, B, "--model", folder, "--top-k", "2", "--lens", "jacobian",
                 "--lens-file", str(tmp_path / "j.pt")]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["settings"]["lens_caption"] == "Jacobian lens, fitted on 4 prompts"
    assert main(["compare", A, B, "--model", folder, "--lens", "tuned"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: twinlens has no tuned lens for") and len(err.splitlines()) == 1


def test_the_nnsight_backend_reads_a_lens_in_its_trace_as_the_hooks_backend_does(tiny_models, tiny_folders,
                                                                                 tmp_path):
    from lib.analyses.lens_training import prompt_jacobians
    from lib.core.models import load_model

    loaded = tiny_models["llama"]
    twin = load_model(str(tiny_folders["llama"]), backend="nnsight")
    g = torch.Generator().manual_seed(4)
    save_jacobian(tmp_path / "j.pt", {r: torch.randn(loaded.d_model, loaded.d_model, generator=g)
                                      for r in range(1, loaded.n_layers)}, n_prompts=2, loaded=loaded)
    here = compare_prompts(loaded, A, B, top_k=3, lens="jacobian", lens_file=str(tmp_path / "j.pt"))
    there = compare_prompts(twin, A, B, top_k=3, lens="jacobian", lens_file=str(tmp_path / "j.pt"))
    assert ids(here.a.lens) == ids(there.a.lens) and probs(here.b.lens) == pytest.approx(probs(there.b.lens))
    with pytest.raises(SettingsError, match="needs the local backend"):
        prompt_jacobians(twin, torch.tensor([[5] * 20]))


def test_watched_tokens_and_words_follow_the_chosen_lens(tiny_models, shipped):
    from lib.analyses.watch import watch_tokens, word_scores

    loaded = tiny_models["llama"]
    shipped(loaded)
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    column = lens_column(loaded, cap_a.residual, -1, 1, "jacobian")
    token = column[1].top[0].id  # the Jacobian lens's top-1 at residual 1
    watched = watch_tokens(loaded, cap_a, cap_b, [token], lens="jacobian")
    plain = watch_tokens(loaded, cap_a, cap_b, [token])
    seen, before = watched.a[0], plain.a[0]
    assert seen.rank[1] == 1 and seen.prob[1] == pytest.approx(column[1].top[0].prob, rel=1e-5)
    assert seen.prob != before.prob and seen.prob[-1] == pytest.approx(before.prob[-1])
    words = word_scores(loaded, cap_a, cap_b, [(token,)], lens="jacobian")
    assert list(words.a[0].prob) == pytest.approx(list(seen.prob), rel=1e-4)


def test_top_token_diff_reads_both_prompts_with_the_chosen_lens(tiny_models, shipped):
    from lib.analyses.diff import top_token_diff
    from lib.core.errors import ModelPairError

    loaded = tiny_models["llama"]
    shipped(loaded)
    cap_a, cap_b = capture(loaded, A), capture(loaded, B)
    diff = top_token_diff(loaded, cap_a, cap_b, top_k=3, lens="jacobian")
    plain = top_token_diff(loaded, cap_a, cap_b, top_k=3)
    column_a = lens_column(loaded, cap_a.residual, -1, 3, "jacobian")
    assert [[t.id for t in layer.top_a] for layer in diff.layers] == ids(cell.top for cell in column_a)
    assert diff.layers[-1].js_bits == pytest.approx(plain.layers[-1].js_bits)
    assert [layer.js_bits for layer in diff.layers[1:-1]] != [layer.js_bits for layer in plain.layers[1:-1]]
    mistral = tiny_models["mistral"]
    with pytest.raises(ModelPairError, match="belongs to one model"):  # a Lens object names one model's lens
        top_token_diff(loaded, cap_a, capture(mistral, A), loaded_b=mistral,
                       lens=read_jacobian(lenses.shipped_folder(loaded) / lenses.JACOBIAN_FILE, loaded))
    with pytest.raises(LensError, match="^twinlens has no Jacobian lens for .*mistral;"):  # by kind: its own
        top_token_diff(loaded, cap_a, capture(mistral, A), loaded_b=mistral, lens="jacobian")
