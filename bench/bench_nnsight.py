"""The nnsight backend run locally ÷ the hooks backend, on the embedded model (issue 15: ≤ 1.25).

Both sides compute the same view from the same text on the same weights (the nnsight load shares
the local load's module): a comparison (`compare_prompts`: both passes and the lens and distance
reductions, one nnsight session) and a patching grid (`patch_residual`, the France/Italy pair,
every layer × position, batched). The
figures are median(nnsight) / median(hooks), timed alternately in this process
(bench.harness.paired); the results are also checked to be equal.

    python bench/bench_nnsight.py     # prints JSON
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from bench.harness import paired  # noqa: E402
from lib.analyses.compare import compare_prompts  # noqa: E402
from lib.analyses.patching import patch_residual  # noqa: E402
from lib.core.models import load_model  # noqa: E402

A, B = "The capital of France is", "The capital of Italy is"
TARGET = 1.25


def run(runs: int = 5) -> dict:
    """Figures `p15_nnsight_compare_ratio` and `p15_nnsight_patch_ratio`, with their timings."""
    hooks = load_model("default")
    nnsight = load_model("default", backend="nnsight")
    compare = paired(lambda: compare_prompts(nnsight, A, B), lambda: compare_prompts(hooks, A, B), runs)
    patch = paired(lambda: patch_residual(nnsight, A, B), lambda: patch_residual(hooks, A, B), runs)
    grid_nn, grid_hooks = patch_residual(nnsight, A, B), patch_residual(hooks, A, B)
    gap = max(abs(x - y) for r1, r2 in zip(grid_nn.raw, grid_hooks.raw, strict=True)
              for x, y in zip(r1, r2, strict=True))
    return {
        "p15_nnsight_compare_ratio": compare.ratio,
        "p15_nnsight_patch_ratio": patch.ratio,
        "max_abs_raw_difference": gap,
        "compare": dataclasses.asdict(compare),
        "patch": dataclasses.asdict(patch),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
