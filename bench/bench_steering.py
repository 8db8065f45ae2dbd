"""Continuations and steering (issue 12), as ratios measured in one run on the embedded model:

- generate_vs_transformers_ratio: twinlens's greedy continuation of 24 tokens (backend.generate:
  one prompt pass, then one pass per token with the key-value cache) ÷ `model.generate` for the
  same tokens (checked equal). Target ≤ 1.2.
- sweep_vs_one_at_a_time_ratio: the steering sweep over all layers × 4 coefficients (plus the
  random control per layer), batched into rows of few passes ÷ the same cells one pass each
  (rows=1). Target ≤ 0.25.

    python bench/bench_steering.py      # prints JSON
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from bench.harness import paired  # noqa: E402
from lib.analyses.generation import GenerationSettings, continue_capture, eos_ids  # noqa: E402
from lib.analyses.steering import steering_sweep  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.chat import Chat  # noqa: E402
from lib.core.models import load_model  # noqa: E402

TARGETS = {"generate_vs_transformers_ratio": ("<=", 1.2), "sweep_vs_one_at_a_time_ratio": ("<=", 0.25)}
NEW_TOKENS = 24
RUNS = 3


def run() -> dict:
    model = load_model("default")
    cap = capture(model, "Is there a seahorse emoji?", chat=Chat(prefill="Yes, here it is:"))
    settings = GenerationSettings(NEW_TOKENS)
    ids = torch.tensor([cap.token_ids])

    def ours():
        return continue_capture(model, cap, settings).token_ids

    def theirs():
        with torch.inference_mode():
            out = model.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                                       do_sample=False, eos_token_id=list(eos_ids(model)),
                                       pad_token_id=model.tokenizer.pad_token_id)
        return tuple(out[0, ids.shape[1]:].tolist())

    assert ours() == theirs(), "the continuation differs from transformers' generate"
    generation = paired(ours, theirs, RUNS)
    cap_a, cap_b = capture(model, "I love dogs. I think that"), capture(model, "I hate dogs. I think that")
    sweep = paired(lambda: steering_sweep(model, cap_a, cap_b),
                   lambda: steering_sweep(model, cap_a, cap_b, rows=1), 1)
    return {
        "generate_vs_transformers_ratio": round(generation.ratio, 3),
        "sweep_vs_one_at_a_time_ratio": round(sweep.ratio, 3),
        "generate_seconds": round(generation.numerator_s, 3),
        "transformers_generate_seconds": round(generation.denominator_s, 3),
        "sweep_seconds": round(sweep.numerator_s, 3),
        "sweep_one_at_a_time_seconds": round(sweep.denominator_s, 3),
        "sweep_cells": (model.n_layers + 1) * 5,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
