"""Components (issue 14): what direct logit attribution, attribution patching and the exact head
grid cost, as ratios measured in this one run on the embedded model (France/Italy pair).

- components_dla_ratio: DLA per layer and head of both prompts (`attribute`, one forward pass each
  recording residuals 0 and L, attn_out, mlp_out and z of every layer) ÷ one `capture` per prompt.
  Target ≤ 1.5.
- components_atp_ratio: attribution patching's forward + backward pass on B (gradients at attn_out,
  mlp_out and z of every layer) ÷ one plain forward pass of B. Target ≤ 3.
- components_head_grid_vs_transformerlens_ratio (needs transformer-lens, requirements-bench.txt):
  `patch_components` (exact attention/MLP and head grids at all positions, batched, plus AtP) ÷
  TransformerLens's `run_with_cache` on A + `get_act_patch_attn_head_out_all_pos` on B (one forward
  pass per head). twinlens does more work (the attention/MLP grid and AtP too);
  components_head_grid_max_abs_difference compares the two raw head grids.
- components_resume_ratio: `patch_components` (each exact cell's run starts at its block, from B's
  residual there) ÷ `patch_components(resume=False)` (every cell from block 0, as the code before
  did in one pass for this grid); components_resume_max_abs_difference compares their effects.

    python bench/bench_components.py        # prints JSON
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
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from bench.harness import paired  # noqa: E402
from lib.analyses.components import attribute, patch_components  # noqa: E402
from lib.core.capture import capture  # noqa: E402
from lib.core.models import ensure_default_model, load_model  # noqa: E402
from lib.core.sites import Site  # noqa: E402

A, B = "The capital of France is", "The capital of Italy is"
TARGETS = {"components_dla_ratio": ("<=", 1.5), "components_atp_ratio": ("<=", 3.0)}


def _transformerlens_heads(ids_a: list[int], ids_b: list[int], answer: int, wrong: int):
    from transformer_lens.patching import get_act_patch_attn_head_out_all_pos

    from bench.reference import boot_transformerlens

    bridge = boot_transformerlens(ensure_default_model())
    tokens_a, tokens_b = torch.tensor([ids_a]), torch.tensor([ids_b])

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, answer] - logits[0, -1, wrong]

    def run() -> torch.Tensor:
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(tokens_a)
            return get_act_patch_attn_head_out_all_pos(bridge, tokens_b, cache, metric)

    return run


def run() -> dict:
    """Figures at the top level (numbers) and `details_components`."""
    model = load_model("default")
    cap_a, cap_b = capture(model, A), capture(model, B)
    result = patch_components(model, cap_a, cap_b)
    answer, wrong = result.answer.id, result.wrong.id
    dla = paired(lambda: [attribute(model, c.token_ids, answer, wrong) for c in (cap_a, cap_b)],
                 lambda: [capture(model, text) for text in (A, B)])
    ids_b = torch.tensor([cap_b.token_ids])
    sites = [Site(layer, kind) for layer in range(model.n_layers) for kind in ("attn_out", "mlp_out", "z")]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, answer] - logits[:, wrong]).sum()

    def gradients() -> object:
        return model.backend.gradients(ids_b, sites, metric)

    atp = paired(gradients, lambda: model.backend.run(ids_b))
    tokens = {"answer": answer, "wrong": wrong}
    whole = patch_components(model, cap_a, cap_b, **tokens, resume=False)
    resume = paired(lambda: patch_components(model, cap_a, cap_b, **tokens),
                    lambda: patch_components(model, cap_a, cap_b, **tokens, resume=False))
    resume_difference = max(
        (torch.tensor(getattr(result, grid)) - torch.tensor(getattr(whole, grid))).abs().max().item()
        for grid in ("heads", "components")
    )
    found: dict = {"components_dla_ratio": dla.ratio, "components_atp_ratio": atp.ratio,
                   "components_atp_pearson_r": result.agreement.pearson_r,
                   "components_resume_ratio": resume.ratio,
                   "components_resume_max_abs_difference": resume_difference}
    details: dict = {"dla": dla.to_dict(), "atp": atp.to_dict(), "resume": resume.to_dict(),
                     "tokens": [cap_a.n_tokens, cap_b.n_tokens]}
    try:
        tl = _transformerlens_heads(list(cap_a.token_ids), list(cap_b.token_ids), answer, wrong)
    except ImportError as exc:
        details["transformerlens"] = f"not measured: {exc}"
    else:
        grids: list[torch.Tensor] = []
        grid = paired(lambda: patch_components(model, cap_a, cap_b), lambda: grids.append(tl()), runs=3)
        gap = result.metric_a - result.metric_b
        ours = torch.tensor([[cell[0] * gap + result.metric_b for cell in row] for row in result.heads])
        found["components_head_grid_vs_transformerlens_ratio"] = grid.ratio
        found["components_head_grid_max_abs_difference"] = (ours - grids[-1].double()).abs().max().item()
        details["head_grid"] = grid.to_dict()
    found["details_components"] = details
    return found


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
