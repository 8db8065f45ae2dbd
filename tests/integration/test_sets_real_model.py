"""The shipped prompt sets on the embedded SmolLM2 (issue 26): capital vs official language is a
contrast of relations the model tells apart from the first block on, and each set's final answers
are the model's own next tokens, checked against transformers' logits for a few rows."""

from __future__ import annotations

import torch

from lib.analyses.sets import compare_sets, encode_sets, shipped_sets
from lib.analyses.steering import load_vector
from lib.core.tokens import readable_token


def test_capital_vs_language_is_separable_after_the_embeddings(real_model):
    sets = shipped_sets("Capital vs official language")
    result = compare_sets(real_model, sets, permutations=2, bootstrap=200)
    accuracies = [s.probe.accuracy for s in result.layers]
    assert accuracies[0] == 0.5  # both end in ' is': the same embedding, nothing to separate
    assert min(accuracies[1:]) >= 0.95
    assert all(0.3 < s.probe.chance < 0.7 for s in result.layers)
    assert "separable at layer 1" in result.summary and "and stay so" in result.summary
    france = result.pairs[0]
    assert (france.a, france.answer_a) == ("The capital of France is", "␣Paris")
    ids_a, ids_b = encode_sets(real_model, sets)
    for row in (0, 7, 31):
        pair = result.pairs[row]
        for ids, answer in ((ids_a[row], pair.answer_a), (ids_b[row], pair.answer_b)):
            with torch.no_grad():
                top1 = int(real_model.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            assert readable_token(real_model.tokenizer, top1) == answer
    vector = load_vector(result.vector_file(), real_model, layer=result.layer)
    assert vector.mode == "caa" and vector.value.shape == (real_model.d_model,)
