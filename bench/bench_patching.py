"""The patching grid: twinlens's batched `patch_residual` ÷ TransformerLens's `get_act_patch_resid_pre`.

Both sides compute the same thing on the embedded model, from the prompts' token ids: one clean
run of A kept, then B's last-position logit difference logit[answer] − logit[wrong] after writing
A's residual into B at each (layer, position). TransformerLens runs one forward pass per cell
(layers 0…L−1, `resid_pre`); twinlens batches the cells into few passes and also covers layer L
(one row more) and its own two captures. The figure is median(twinlens) / median(TransformerLens),
both timed alternately in this process (bench.harness.paired); the raw grids are compared too.

patching_resume_ratio_<pair> (target ≤ 0.6): `patch_captures` (each cell's run starts at its own
layer from B's residual; cells that write B's own values are B's run) ÷ `patch_captures(resume=False)`
(every cell from the embeddings: the work of the code before, whose one pass over this grid started
at layer 0), both on the same two captures, timed in turns; patching_resume_max_abs_raw_difference
compares their raw grids. details give patching_staged_only_ratio: the staged passes alone, without
reusing B's run for cells that write B's own values.

    python bench/bench_patching.py          # the France/Italy pair; prints JSON
    python bench/bench_patching.py capital ioi   # also the 17-token Claire/Mary pair
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens shows a bar per grid

import torch  # noqa: E402

from bench.harness import paired  # noqa: E402
from bench.reference import Work, boot_transformerlens  # noqa: E402
from lib.analyses.patching import PatchResult, patch_captures, patch_residual  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.models import LoadedModel, ensure_default_model, load_model  # noqa: E402

PAIRS = {  # name → (A, B), same number of tokens so the full grid is patched
    "capital": ("The capital of France is", "The capital of Italy is"),
    "ioi": (
        "Claire and Mary went to the shops, then Mary gave a bottle of milk to",
        "Claire and Mary went to the shops, then Claire gave a bottle of milk to",
    ),
}
RUNS = 3  # TransformerLens needs L × positions forward passes per grid
RESUME_RUNS = 7  # the resume ratio's pairs: cheap enough for more, and the machine is shared
TARGETS = {"patching_resume_ratio_capital": ("<=", 0.6)}


def twinlens_grid(model: LoadedModel, a: str, b: str) -> Work:
    return lambda: patch_residual(model, a, b)


def transformerlens_grid(bridge, ids_a: list[int], ids_b: list[int], answer: int, wrong: int) -> Work:
    """`run_with_cache` on A, then `get_act_patch_resid_pre` on B with the logit-difference metric."""
    from transformer_lens.patching import get_act_patch_resid_pre

    tokens_a, tokens_b = torch.tensor([ids_a]), torch.tensor([ids_b])

    def logit_difference(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, answer] - logits[0, -1, wrong]

    def run() -> torch.Tensor:
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(tokens_a)
            return get_act_patch_resid_pre(bridge, tokens_b, cache, logit_difference)

    return run


def _one_cell_per_pass_seconds(model: LoadedModel, a: str, b: str, result: PatchResult) -> float:
    """twinlens without batching (rows=1), timed once: how much of the figure batching explains."""
    cap_a, cap_b = capture(model, a), capture(model, b)
    start = time.perf_counter()
    patch_captures(model, cap_a, cap_b, answer=result.answer.id, wrong=result.wrong.id, rows=1)
    return time.perf_counter() - start


def measure_resume(model: LoadedModel, a: str, b: str, runs: int = RESUME_RUNS) -> tuple[dict, dict]:
    """(figures, details): the grid resumed from B's run ÷ the grid with every cell from block 0."""
    from lib.analyses import patching

    cap_a, cap_b = capture(model, a), capture(model, b)
    resumed, whole = patch_captures(model, cap_a, cap_b), patch_captures(model, cap_a, cap_b, resume=False)
    tokens = {"answer": resumed.answer.id, "wrong": resumed.wrong.id}

    def from_block_zero() -> object:
        return patch_captures(model, cap_a, cap_b, **tokens, resume=False)

    timing = paired(lambda: patch_captures(model, cap_a, cap_b, **tokens), from_block_zero, runs=runs)
    patches, _, _ = patching.grid_patches(cap_a, cap_b, model.n_layers)
    metric = resumed.metric()

    def staged_only() -> object:
        return patching._patched(model, cap_a, cap_b, patches, lambda run: metric(run.logits))

    staged = paired(staged_only, from_block_zero, runs=runs)
    difference = (torch.tensor(resumed.raw) - torch.tensor(whole.raw)).abs().max().item()
    figures = {"resume_ratio": timing.ratio, "resume_max_abs_raw_difference": difference}
    details = {"resume": timing.to_dict(), "staged_only": staged.to_dict(),
               "patching_staged_only_ratio": staged.ratio}
    return figures, details


def measure_pair(model: LoadedModel, bridge, a: str, b: str, runs: int) -> tuple[dict, dict]:
    """(figures, details) for one prompt pair.

    max_abs_raw_difference: the largest gap between the two tools' raw grids (layers 0…L−1), a
    check that both measure the same thing.
    """
    ids_a, ids_b = (model.tokenizer(t)["input_ids"] for t in (a, b))
    passes_before = model.forward_passes
    result = patch_residual(model, a, b)
    twinlens_passes = model.forward_passes - passes_before
    tl = transformerlens_grid(bridge, ids_a, ids_b, result.answer.id, result.wrong.id)
    tl_grids: list[torch.Tensor] = []
    timing = paired(twinlens_grid(model, a, b), lambda: tl_grids.append(tl()), runs=runs)
    difference = (torch.tensor(result.raw[:-1]) - tl_grids[-1].float()).abs().max().item()
    figures = {"vs_transformerlens_ratio": timing.ratio, "max_abs_raw_difference": difference}
    details = {
        "tokens": [len(ids_a), len(ids_b)],
        "cells_twinlens": len(result.raw) * len(result.positions),
        "cells_transformerlens": model.n_layers * len(ids_b),
        "forward_passes_twinlens": twinlens_passes,
        "forward_passes_transformerlens": 1 + model.n_layers * len(ids_b),
        "twinlens_one_cell_per_pass_s": _one_cell_per_pass_seconds(model, a, b, result),
        **timing.to_dict(),
    }
    return figures, details


def run(pairs: tuple[str, ...] = ("capital",), runs: int = RUNS) -> dict:
    """Figures (numbers at the top level, `patching_<figure>_<pair>`) and `details_<pair>` for
    each pair named in `pairs`."""
    model = load_model("default")
    bridge = boot_transformerlens(ensure_default_model())
    found: dict = {}
    for name in pairs:
        figures, details = measure_pair(model, bridge, *PAIRS[name], runs)
        resume_figures, resume_details = measure_resume(model, *PAIRS[name])
        found.update({f"patching_{k}_{name}": v for k, v in {**figures, **resume_figures}.items()})
        found[f"details_{name}"] = {**details, **resume_details}
    return found


if __name__ == "__main__":
    print(json.dumps(run(tuple(sys.argv[1:]) or ("capital",)), indent=1))
