"""Lenses (issue 25): the Jacobian fit and readout against TransformerLens 4, and what reading a
lens costs, on the embedded model.

- lens_jacobian_parity_max_rel_frobenius: per source layer, ‖J_twinlens − J_TL‖_F / ‖J_TL‖_F, where
  J_TL is `JacobianLens.fit` (TransformerLens 4.3.0, requirements-bench.txt) and J_twinlens is
  `lens_training.prompt_jacobians` on the very token ids TransformerLens read (its `to_tokens`),
  averaged over the same prompts, same skip and truncation; the largest over the layers fitted.
  Target ≤ 1e-3. To keep this a bench and not an hours-long fit, only the last three source
  layers (TL 26–28 = twinlens residuals 27–29) and two short prompts are fitted: the estimator is
  the same at every layer (one backward pass per output dimension, through the blocks above).
- lens_readout_max_abs_logit_difference: TL's `readout(return_full_logits=True)` of that lens vs
  twinlens reading the same lens file (`read_jacobian`, saved by TL in float32) at every position
  of a prompt; lens_readout_top1_agreement: the share of (layer, position) cells with the same top-1.
- lens_transformerlens_reads_twinlens_file: 1 when TransformerLens's `JacobianLens.load` +
  `validate_model` read a file twinlens wrote (`save_jacobian`) back to the same matrices.
- lens_compare_cost_ratio: `compare_prompts` with the Jacobian lens ÷ with the logit lens (paired
  medians). Target ≤ 1.15.
- lens_fit_seconds_per_prompt / per token: twinlens's fit of those layers, as measured here.

    python bench/bench_lenses.py        # prints JSON
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from bench.harness import paired  # noqa: E402
from lib.analyses.common.lenses import read_jacobian, save_jacobian  # noqa: E402
from lib.analyses.compare import compare_prompts  # noqa: E402
from lib.analyses.lens_training import prompt_jacobians  # noqa: E402
from lib.core.models import ensure_default_model, load_model  # noqa: E402
from lib.core.sites import residual_sites  # noqa: E402

PROMPTS = (
    "Anarchism is a political philosophy and movement that is sceptical of authority and rejects all "
    "involuntary, coercive forms of hierarchy.",
    "Albedo is the measure of the diffuse reflection of solar radiation out of the total solar radiation "
    "and measured on a scale from 0 to 1.",
)
READOUT = "The capital of France is Paris, and the capital of Italy is"
A, B = "The capital of France is", "The capital of Italy is"
TL_LAYERS = (26, 27, 28)  # block outputs; twinlens residuals 27, 28, 29
SKIP, MAX_LEN, DIM_BATCH = 16, 32, 32
TARGETS = {"lens_jacobian_parity_max_rel_frobenius": ("<=", 1e-3), "lens_compare_cost_ratio": ("<=", 1.15),
           "lens_transformerlens_reads_twinlens_file": ("=", 1.0)}


def run() -> dict:
    from transformer_lens.tools.analysis import JacobianLens

    from bench.reference import boot_transformerlens

    model = load_model("default")
    bridge = boot_transformerlens(ensure_default_model())
    bridge.eval()
    tl = JacobianLens.fit(
        bridge, list(PROMPTS), corpus="bench", source_layers=list(TL_LAYERS), dim_batch=DIM_BATCH,
        max_seq_len=MAX_LEN, skip_first_positions=SKIP, show_progress=False,
    )
    tokens = [bridge.to_tokens(p)[:, :MAX_LEN] for p in PROMPTS]
    start = time.perf_counter()
    ours = [prompt_jacobians(model, t, skip=SKIP, batch=DIM_BATCH, residuals=[x + 1 for x in TL_LAYERS])
            for t in tokens]
    seconds = time.perf_counter() - start
    rel = {}
    for layer in TL_LAYERS:
        mine = sum(o[layer + 1] for o in ours) / len(ours)
        theirs = tl.jacobians[layer]
        rel[layer] = float(torch.linalg.norm(mine - theirs) / torch.linalg.norm(theirs))

    with tempfile.TemporaryDirectory() as folder:
        mine_path = Path(folder) / "twinlens.pt"
        means = {layer + 1: sum(o[layer + 1] for o in ours) / len(ours) for layer in TL_LAYERS}
        save_jacobian(mine_path, means, n_prompts=len(ours), loaded=model)
        back = JacobianLens.load(str(mine_path)).validate_model(bridge)  # TransformerLens reads ours
        tl_reads_ours = all(torch.equal(back.jacobians[layer], means[layer + 1].half().float())
                            for layer in TL_LAYERS)
        path = Path(folder) / "tl.pt"
        tl.save(str(path), dtype=torch.float32)
        lens = read_jacobian(path, model)
        ids = bridge.to_tokens(READOUT)
        read = tl.readout(bridge, ids, layers=list(TL_LAYERS), return_full_logits=True)
        sites = residual_sites(model.n_layers)
        run_ = model.backend.run(ids, sites=sites)
        diffs, same, cells = [], 0, 0
        for layer in TL_LAYERS:
            hidden = run_.activations[sites[layer + 1]][0]
            logits = model.backend.lens_logits(lens.transform_layer(hidden, layer + 1))
            theirs = read.lens_logits[layer]
            diffs.append(float((logits - theirs).abs().max()))
            same += int((logits.argmax(-1) == theirs.argmax(-1)).sum())
            cells += logits.shape[0]
        cost = paired(lambda: compare_prompts(model, A, B, lens="jacobian", lens_file=str(path)),
                      lambda: compare_prompts(model, A, B))
    n_tokens = sum(t.shape[1] for t in tokens)
    return {
        "lens_jacobian_parity_max_rel_frobenius": max(rel.values()),
        "lens_readout_max_abs_logit_difference": max(diffs),
        "lens_readout_top1_agreement": same / cells,
        "lens_transformerlens_reads_twinlens_file": float(tl_reads_ours),
        "lens_compare_cost_ratio": cost.ratio,
        "lens_fit_seconds_per_prompt": seconds / len(tokens),
        "lens_fit_seconds_per_token": seconds / n_tokens,
        "details": {
            "rel_frobenius_per_tl_layer": rel, "tl_layers": list(TL_LAYERS), "prompts": len(PROMPTS),
            "tokens": [t.shape[1] for t in tokens], "skip": SKIP, "dim_batch": DIM_BATCH,
            "fit_note": "fit cost covers the three layers fitted here (backward through blocks 27-29 only); "
                        "a full fit backpropagates through every block",
            "compare_seconds": {"jacobian": cost.numerator_s, "logit": cost.denominator_s},
        },
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1))
