"""Residual distances of the happy/angry pair on the embedded SmolLM2, pinned against a direct
computation from transformers' own hidden states (issue 16: the old 'mean over positions' was the
distance between position-averaged states, ~1e-5 from layer 12 on, while the changed word sat at
0.12–0.15)."""

from __future__ import annotations

import pytest
import torch

from lib.analyses.common.distances import distance_report
from lib.core.capture import capture

A, B = "You have happy emotion in yourself!", "You have angry emotion in yourself!"


def direct_cosine_distances(real_model, text: str, other: str) -> torch.Tensor:
    """[L, pos] 1 − cos of transformers' hidden_states 0…L−1 (the last one is after the final norm)."""
    states = []
    for t in (text, other):
        ids = torch.tensor([capture(real_model, t).token_ids])
        with torch.no_grad():
            out = real_model.model(input_ids=ids, output_hidden_states=True)
        states.append(torch.stack(out.hidden_states[:-1])[:, 0].double())
    return 1 - torch.nn.functional.cosine_similarity(states[0], states[1], dim=-1)


def test_mean_distance_is_the_mean_of_per_position_distances_without_the_first(real_model):
    cap_a, cap_b = capture(real_model, A), capture(real_model, B)
    report = distance_report(cap_a.residual, cap_b.residual)  # first position left out by default
    direct = direct_cosine_distances(real_model, A, B)  # [L, pos]
    n_layers = real_model.n_layers
    assert report.mean.cosine[:n_layers] == pytest.approx(direct[:, 1:].mean(1).tolist(), abs=2e-4)
    assert [row[1] for row in report.positions.cosine[:n_layers]] == pytest.approx(direct[:, 2].tolist(),
                                                                                  abs=2e-4)
    # The pinned numbers: the changed word (position 2) stays 0.12–0.22 in the middle layers, and
    # the mean follows it instead of falling to ~1e-5 as the distance of averaged states did.
    assert all(0.08 < report.positions.cosine[layer][1] < 0.25 for layer in range(12, n_layers))
    assert all(0.02 < report.mean.cosine[layer] < 0.05 for layer in range(12, n_layers + 1))
    assert report.mean.cosine[12] == pytest.approx(0.0302, abs=1e-3)
    assert "mean of the per-position distances (first position left out)" in report.summary()
