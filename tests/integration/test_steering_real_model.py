"""Steering on the embedded SmolLM2: the A − B invariant and a Love − Hate push that shows."""

from __future__ import annotations

import torch

from lib.analyses.common.decode import GenerationSettings
from lib.analyses.steering import steer_captures, steering_interventions, steering_vector
from lib.core.capture import capture


def test_aligned_difference_gives_a_on_the_embedded_model(real_model):
    cap_a = capture(real_model, "The capital of France is")
    cap_b = capture(real_model, "The capital of Italy is")
    vector = steering_vector(real_model, cap_a, cap_b, 12, "aligned")
    prompt, _ = steering_interventions(real_model.n_layers, 12, [vector.value], "all")
    run = real_model.backend.run(torch.tensor([cap_b.token_ids]), interventions=prompt)
    assert int(run.logits[0].argmax()) == int(cap_a.final_logits.argmax())
    torch.testing.assert_close(torch.softmax(run.logits[0], -1), torch.softmax(cap_a.final_logits, -1),
                               atol=1e-4, rtol=1e-3)


def test_steering_moves_the_logit_difference_toward_a(real_model):
    cap_a = capture(real_model, "The capital of France is")
    cap_b = capture(real_model, "The capital of Italy is")
    result = steer_captures(real_model, cap_a, cap_b, layer=12, alpha=1.0, settings=GenerationSettings(4))
    assert result.metric.answer.token == "␣Paris" and result.metric.wrong.token == "␣Rome"
    assert result.steered.logit_diff > result.unsteered.logit_diff > result.negated.logit_diff
