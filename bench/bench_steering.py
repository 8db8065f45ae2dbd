"""Continuations and steering (issue 12), as ratios measured in one run on the embedded model:

- generate_vs_transformers_ratio: twinlens's greedy continuation of 24 tokens (backend.generate:
  one prompt pass, then one pass per token with the key-value cache) ÷ `model.generate` for the
  same tokens (checked equal). Target ≤ 1.2.
- sweep_vs_one_at_a_time_ratio: the steering sweep over all layers × 4 coefficients (plus the
  random control per layer), batched into rows of few passes ÷ the same cells one pass each
  (rows=1). Target ≤ 0.25.

Both figures are wall-clock ratios: the two sides run back to back in turns (which goes first
alternates), after one warm-up each, and the figure is the median of the per-pair ratios. Each run
is also timed in CPU seconds of this process (all its threads), so the details give the CPU-time
ratio of the very same runs beside the wall-clock one; on a machine shared with other work the
wall clock is what a user waits, the CPU time what the work costs.

    python bench/bench_steering.py      # prints JSON (this part alone, no other figure)
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from lib.analyses.common.decode import GenerationSettings, eos_ids  # noqa: E402
from lib.analyses.generation import continue_capture  # noqa: E402
from lib.analyses.steering import steering_sweep  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.chat import Chat  # noqa: E402
from lib.core.models import load_model  # noqa: E402

TARGETS = {"generate_vs_transformers_ratio": ("<=", 1.2), "sweep_vs_one_at_a_time_ratio": ("<=", 0.25)}
NEW_TOKENS = 24
RUNS = 3


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def side_by_side(numerator: Callable[[], object], denominator: Callable[[], object],
                 runs: int = RUNS) -> dict:
    """Warm both up once, then time them back to back `runs` times, alternating which goes first;
    the wall-clock and the CPU-time ratio (medians of the per-pair ratios) of the same runs."""
    numerator()
    denominator()
    pairs = []
    for i in range(runs):
        if i % 2:
            bottom = _timed(denominator)
            top = _timed(numerator)
        else:
            top = _timed(numerator)
            bottom = _timed(denominator)
        pairs.append((top, bottom))

    def figures(clock: int) -> dict:
        return {"numerator_s": statistics.median(t[clock] for t, _ in pairs),
                "denominator_s": statistics.median(b[clock] for _, b in pairs),
                "ratio": statistics.median(t[clock] / b[clock] for t, b in pairs), "runs": runs}

    return {"wall": figures(0), "cpu": figures(1)}


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
    generation = side_by_side(ours, theirs)
    cap_a, cap_b = capture(model, "I love dogs. I think that"), capture(model, "I hate dogs. I think that")
    sweep = side_by_side(lambda: steering_sweep(model, cap_a, cap_b),
                         lambda: steering_sweep(model, cap_a, cap_b, rows=1))
    return {
        "generate_vs_transformers_ratio": round(generation["wall"]["ratio"], 3),
        "sweep_vs_one_at_a_time_ratio": round(sweep["wall"]["ratio"], 3),
        "generate_vs_transformers_cpu_ratio": round(generation["cpu"]["ratio"], 3),
        "sweep_vs_one_at_a_time_cpu_ratio": round(sweep["cpu"]["ratio"], 3),
        "generate": generation["wall"],
        "generate_cpu": generation["cpu"],
        "sweep": sweep["wall"],
        "sweep_cpu": sweep["cpu"],
        "sweep_cells": (model.n_layers + 1) * 5,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
