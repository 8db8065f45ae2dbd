"""The lenses twinlens ships for the embedded SmolLM2 (`make lenses`): they load for that model,
every lens is the model's own distribution at the last layer, and the card's faithfulness figures
are what the files give on the card's held-out windows (the tuned lens below the logit lens at
every layer before the last)."""

from __future__ import annotations

import json

import pytest
import torch

from lib.analyses.common.lens import lens_column
from lib.analyses.common.lenses import CARD_FILE, available, lens_for, logit_lens, shipped_folder
from lib.analyses.lens_training import faithfulness
from lib.core.capture import capture


@pytest.fixture(scope="module")
def card(real_model):
    folder = shipped_folder(real_model)
    assert folder is not None, "no lenses shipped for the embedded model"
    return json.loads((folder / CARD_FILE).read_text())


def test_shipped_lenses_load_and_agree_with_the_model_at_the_last_layer(real_model, card):
    kinds = available(real_model)
    assert "tuned" in kinds and "jacobian" in kinds
    cap = capture(real_model, "The capital of France is")
    own = torch.softmax(cap.final_logits.float(), -1).topk(5).indices.tolist()
    for kind in kinds:
        lens = lens_for(real_model, kind)
        assert [t.id for t in lens_column(real_model, cap.residual, -1, 5, lens)[-1].top] == own
    assert lens_for(real_model, "jacobian").n_prompts == card["jacobian"]["prompts"]


RECOMPUTED = (0, 1, 2, 15, 28, 29, 30)  # the embeddings, early, middle, late and the last residual


def test_card_figures_are_what_the_shipped_files_give_on_its_held_out_windows(real_model, card):
    """Recomputed at seven residuals (all 31 take a minute and a half; unit tests check that a
    subset of residuals gives the same figures as the whole)."""
    windows = torch.tensor(card["heldout"]["token_ids"])
    lenses = [logit_lens(real_model), lens_for(real_model, "tuned"), lens_for(real_model, "jacobian")]
    for found in faithfulness(real_model, windows, lenses, residuals=RECOMPUTED):
        on_card = card["faithfulness"][found.kind]
        assert found.kl_bits == pytest.approx([on_card["kl_bits"][r] for r in RECOMPUTED], abs=0.02)
        assert found.top1_agreement == pytest.approx([on_card["top1_agreement"][r] for r in RECOMPUTED],
                                                     abs=0.01)
    logit, tuned = card["faithfulness"]["logit"]["kl_bits"], card["faithfulness"]["tuned"]["kl_bits"]
    assert all(t < p for t, p in zip(tuned[:-1], logit[:-1], strict=True))
    assert logit[-1] < 1e-3 and tuned[-1] < 1e-3
